import { existsSync, readFileSync } from 'node:fs';
import { parseEnv } from 'node:util';
import { ConfigError } from './config';

/**
 * Reads a `.env` file into `env` with Node's own parser — the one behind `node --env-file`
 * (quotes, `#` comments, `export`, values with spaces or `<…>` such as MAIL_FROM) — never with a
 * shell. The real environment wins: a variable already set, even to an empty string, is kept.
 * Returns the names it set. Called first by every entry point (API, worker, the migration CLI's
 * ormconfig, seed, admin:create) so they all see the same values.
 *
 * Which file: `path` if given; else the file ENV_FILE names (it must exist); else `.env` in the
 * working directory (npm runs in the repo root), if there is one. `ENV_FILE=` (empty) reads none
 * (the test harness: a developer's .env must not leak into the processes tests spawn).
 */
export function loadEnvFile(
  path?: string,
  env: Record<string, string | undefined> = process.env,
): string[] {
  let file = path;
  if (file === undefined) {
    const chosen = env.ENV_FILE;
    if (chosen === '') return [];
    if (chosen !== undefined && !existsSync(chosen)) {
      throw new ConfigError([`ENV_FILE: no such file "${chosen}"`]);
    }
    file = chosen ?? '.env';
  }
  if (!existsSync(file)) return [];
  const parsed = parseEnv(readFileSync(file, 'utf8'));
  const applied: string[] = [];
  for (const [name, value] of Object.entries(parsed)) {
    if (value === undefined || env[name] !== undefined) continue;
    env[name] = value;
    applied.push(name);
  }
  return applied;
}
