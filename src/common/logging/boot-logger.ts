import type { LoggerService } from '@nestjs/common';
import pino from 'pino';
import { LOG_OPTIONS } from './error-serializer';

type Level = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';

/**
 * The logger Nest writes to while the application is being created, before nestjs-pino's (a
 * provider, so not there until the modules are) takes over: the same JSON lines, with the
 * `context` key nestjs-pino uses. A boot that fails — a database down past the connection's
 * retries, a module that throws — is then logged as JSON like everything else; it was Nest's
 * coloured text (its buffered lines and the stack flushed to its default console logger),
 * which a pipeline reading JSON lines cannot parse.
 */
export function bootLogger(
  level: string,
  destination: pino.DestinationStream = pino.destination(1),
): LoggerService {
  const log = pino({ ...LOG_OPTIONS, level }, destination);
  // Nest calls (message, context), and error/fatal (message, stack, context); an exception
  // handler passes the Error itself
  const write =
    (at: Level) =>
    (message: unknown, ...rest: unknown[]): void => {
      const context =
        rest.length > 0 && typeof rest[rest.length - 1] === 'string'
          ? rest[rest.length - 1]
          : undefined;
      const stack = (at === 'error' || at === 'fatal') && rest.length > 1 ? rest[0] : undefined;
      const fields = {
        ...(context !== undefined ? { context } : {}),
        ...(typeof stack === 'string' ? { stack } : {}),
      };
      if (message instanceof Error) log[at]({ ...fields, err: message }, message.message);
      else if (typeof message === 'string') log[at](fields, message);
      else log[at]({ ...fields, detail: message });
    };
  return {
    fatal: write('fatal'),
    error: write('error'),
    warn: write('warn'),
    log: write('info'),
    debug: write('debug'),
    verbose: write('trace'),
  };
}

/**
 * A boot that failed, as the process's last JSON line (level fatal) before it exits: a refused
 * configuration (its message names the variables; `problems` lists them), a port already taken,
 * a hook that threw once the modules were up. It was printed by console.error — a
 * configuration's lines as text, anything else as Node's multi-line dump of the error.
 */
export function logBootFailure(
  err: unknown,
  destination: pino.DestinationStream = pino.destination({ dest: 1, sync: true }),
): void {
  const log = pino({ ...LOG_OPTIONS, level: 'info' }, destination);
  const problems = (err as { problems?: unknown } | null | undefined)?.problems;
  if (Array.isArray(problems)) log.fatal({ problems }, (err as Error).message);
  else if (err instanceof Error) log.fatal({ err }, `boot failed: ${err.message}`);
  else log.fatal({ detail: err }, 'boot failed');
}
