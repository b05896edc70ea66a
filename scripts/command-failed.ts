import { ConfigError } from '../src/config/config';
import { exitCodeOf } from '../src/config/exit-codes';

/**
 * How a command (`admin:create`, `seed`) ends on an error. A refusal — a configuration that does
 * not hold (ConfigError names the variables), or one with an exit code of its own (a Redis that
 * evicts keys, a key prefix another database holds) — is its message alone, with its code; anything
 * else is printed whole, with its stack (exit 1).
 */
export function commandFailed(err: unknown): never {
  const refusal = err instanceof ConfigError || exitCodeOf(err) !== 1;
  console.error(refusal && err instanceof Error ? err.message : err);
  process.exit(exitCodeOf(err));
}
