import { existsSync, readFileSync } from 'node:fs';
import { parseEnv } from 'node:util';

/** Where every process and script looks for it: the working directory (npm runs in the repo root). */
export const ENV_FILE = '.env';

/**
 * Reads a `.env` file into `env` with Node's own parser — the one behind `node --env-file`
 * (quotes, `#` comments, `export`, values with spaces or `<…>` such as MAIL_FROM) — never with a
 * shell. The real environment wins: a variable already set, even to an empty string, is kept.
 * No file, nothing to do. Returns the names it set. Called first by every entry point (API,
 * worker, the migration CLI's ormconfig, seed, admin:create) so they all see the same values.
 */
export function loadEnvFile(
  path: string = ENV_FILE,
  env: Record<string, string | undefined> = process.env,
): string[] {
  if (!existsSync(path)) return [];
  const parsed = parseEnv(readFileSync(path, 'utf8'));
  const applied: string[] = [];
  for (const [name, value] of Object.entries(parsed)) {
    if (value === undefined || env[name] !== undefined) continue;
    env[name] = value;
    applied.push(name);
  }
  return applied;
}
