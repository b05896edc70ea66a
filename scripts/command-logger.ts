import { ConsoleLogger, type LogLevel } from '@nestjs/common';
import { withoutCredentials } from '../src/database/connection-refusal';

/**
 * Nest's console logger for a command that loads the application, at `logLevels`. The command
 * boots it with `abortOnError: false`, so that a boot's failure reaches commandFailed with its exit
 * code (a refused DATABASE_URL's EXIT_CONFIG: Nest's own ending was exit 1), and that failure is
 * said once, there — not also by Nest's ExceptionHandler (the error whole, its stack and fields),
 * nor with its stack by each of TypeOrmModule's connection retries (a refused DATABASE_URL printed
 * its stack four times before the line that says what to do).
 */
export function commandLogger(logLevels: LogLevel[]): ConsoleLogger {
  return new CommandLogger({ logLevels });
}

class CommandLogger extends ConsoleLogger {
  override error(message: unknown, ...rest: unknown[]): void {
    const context = rest.at(-1);
    if (context === 'ExceptionHandler') return;
    // (message, stack, context): its retry lines, each with its cause — the stack's first line,
    // credentials taken out (the attempts may fail for different reasons) — but not the stack; the
    // error that ends the boot is left to commandFailed
    if (context === 'TypeOrmModule') {
      const cause = typeof rest[0] === 'string' ? rest[0].split('\n')[0] : '';
      const line = cause ? `${String(message)} (${withoutCredentials(cause)})` : message;
      return super.error(line, context);
    }
    super.error(message, ...rest);
  }
}
