/**
 * The exit code of a process stopped by its configuration — its own checks (ConfigError), or ones
 * made while it booted or ran (REDIS_KEY_PREFIX held for another database: KeyPrefixClaim) —
 * sysexits' EX_CONFIG. The API's cluster primary stops on it instead of replacing the process,
 * which would be refused again, for ever.
 */
export const EXIT_CONFIG = 78;

/**
 * The exit code `err` asks for: a refusal's own (EXIT_CONFIG: ConfigError, PrefixInUse,
 * EvictingRedis; EXIT_NOT_SEEDED), else `otherwise` (1).
 */
export function exitCodeOf(err: unknown, otherwise = 1): number {
  const code = (err as { exitCode?: unknown } | undefined)?.exitCode;
  return typeof code === 'number' ? code : otherwise;
}

/**
 * The exit code of `npm run seed` refused because the database holds data the seed did not create
 * (DatabaseInUse, src/seed/demo.seeder.ts) — sysexits' EX_DATAERR. `npm start` goes on without
 * demo data then (a developer's own accounts and orders are such data too), and stops on any other.
 */
export const EXIT_NOT_SEEDED = 65;
