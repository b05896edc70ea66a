import { existsSync, readFileSync, statSync } from 'node:fs';
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
  if (!statSync(file).isFile()) throw new ConfigError([`${file}: not a file`]);
  // (a byte-order mark, as some editors save one, would be read as part of the first name)
  const text = readFileSync(file, 'utf8').replace(/^\uFEFF/, '');
  const parsed = parseEnv(text);
  const problems = envFileProblems(file, text, parsed);
  if (problems.length > 0) throw new ConfigError(problems);
  const applied: string[] = [];
  for (const [name, value] of Object.entries(parsed)) {
    // (a `# …` name — an indented comment — is no variable: envFileProblems lets it be)
    if (value === undefined || !NAME.test(name) || env[name] !== undefined) continue;
    env[name] = value;
    applied.push(name);
  }
  return applied;
}

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * What in an env file would be read otherwise than meant, never quoting a value (the file holds
 * secrets) — the same rules as scripts/dotenv.js, the shell scripts' reader:
 * - a line that is neither `NAME=value` nor a `# comment` (a note without its `#`): Node's parser
 *   reads it as the start of the next line's name, so that variable is lost — `DOCS_ENABLED=false`
 *   under such a line left the API docs on, `HOST=127.0.0.1` the API on every interface
 *   (configuration review);
 * - a name set twice: only the last counts, whichever the reader of the file took for the one.
 */
function envFileProblems(
  file: string,
  text: string,
  parsed: Record<string, string | undefined>,
): string[] {
  const problems: string[] = [];
  for (const [name, value] of Object.entries(parsed)) {
    if (NAME.test(name)) continue;
    if (name.trimStart().startsWith('#') && !name.includes('\n')) {
      // an indented comment holding a `=`: read as a variable named `# …`, never used — harmless,
      // unless its value opens a quote: the lines after it, to the next quote, are then its value
      if (!(value ?? '').includes('\n')) continue;
      problems.push(
        `${file}: an indented # comment opens a quote its line does not close (the lines after it, to the next quote, are read as its value: their variables would be lost)`,
      );
      continue;
    }
    const lines = name.split('\n');
    const swallowed = lines.pop() ?? '';
    const before =
      lines.length > 0 && lines.join('').trim() === ''
        ? 'a line of only spaces or tabs'
        : lines[0]?.trimStart().startsWith('#')
          ? 'an indented # comment without a = (only a # at the start of a line makes a comment)'
          : 'a line that is neither NAME=value nor a # comment';
    problems.push(
      NAME.test(swallowed)
        ? `${file}: ${before} before ${swallowed} (read as part of its name: ${swallowed} would be lost)`
        : `${file}: ${before}`,
    );
  }
  // (a carriage return with text after it on its line — old Mac line endings, a paste — is dropped
  // by the parser, which then reads the lines it separated as one: `A=1⏎B=2` set A to `1B=2`; one
  // before a line feed or at the end, a CRLF file's, changes nothing)
  if (/\r+(?=[^\r\n])/.test(text)) {
    problems.push(
      `${file}: a carriage return without a line feed (old Mac line endings?): the parser drops it, joining lines (the later variables lost) or changing a value`,
    );
  }
  const seen = new Set<string>();
  // the lines of values spanning lines (quoted): an assignment-looking line among them is part of
  // a value, not a second setting of its name (third review: `NOTE="see\nHOST=x"` beside a real
  // HOST was refused as HOST set twice)
  const valueLines = new Set(
    Object.values(parsed).flatMap((value) => (value ?? '').split('\n').slice(1)),
  );
  // (a value's last line, in the text, goes on with its closing quote)
  const isValueLine = (line: string) =>
    [...valueLines].some(
      (v) => line === v || (line.startsWith(v) && /^["'`]/.test(line.slice(v.length))),
    );
  for (const [line, name] of text.matchAll(
    /^[ \t]*(?:export[ \t]+)?([A-Za-z_][A-Za-z0-9_]*)[ \t]*=.*$/gm,
  )) {
    if (!Object.hasOwn(parsed, name) || isValueLine(line.replace(/\r$/, ''))) continue;
    if (seen.has(name))
      problems.push(`${file}: ${name} is set more than once (only the last would count)`);
    seen.add(name);
  }
  return [...new Set(problems)];
}
