import { ConfigError } from '../src/config/config';
import { exitCodeOf } from '../src/config/exit-codes';

/**
 * How a command (`admin:create`, `seed`, `payments:orphans`; the migration CLI refused its sign-in:
 * ormconfig.ts) ends on an error. A refusal — a configuration that does not hold (ConfigError names
 * the variables), or one with an exit code of its own (a database refusing the sign-in, a Redis
 * that evicts keys, a key prefix another database holds) — is its message alone, with its code;
 * anything else is printed whole, with its stack. An error without a code of its own exits with
 * `otherwise` (1, unless the command gives 1 a meaning of its own).
 */
export function commandFailed(err: unknown, otherwise = 1): never {
  const refusal = err instanceof ConfigError || exitCodeOf(err) !== 1;
  console.error(refusal && err instanceof Error ? err.message : err);
  process.exit(exitCodeOf(err, otherwise));
}
