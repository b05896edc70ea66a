// For the shell scripts (start.sh, ensure-services.sh): prints the `.env` entries the
// environment does not set yet, as NUL-separated name/value pairs, parsed by Node's own parser
// (the one behind `node --env-file` and src/config/env-file.ts), never by a shell: values with
// spaces, <…>, quotes, $ or backticks arrive verbatim and nothing in .env is ever executed.
//   while IFS= read -r -d '' k && IFS= read -r -d '' v; do export "$k=$v"; done < <(node scripts/dotenv.js)
const { existsSync, readFileSync, statSync } = require('node:fs');
const { parseEnv } = require('node:util');

// ENV_FILE names another file (it must exist); ENV_FILE= (empty) reads none (as src/config/env-file.ts)
const chosen = process.env.ENV_FILE;
if (chosen && !existsSync(chosen)) {
  console.error(`ENV_FILE: no such file "${chosen}"`);
  process.exit(78); // a refused configuration, as the processes' own (src/config/exit-codes.ts)
}
const path = chosen === undefined ? '.env' : chosen;
if (path && existsSync(path)) {
  if (!statSync(path).isFile()) refuse([`${path}: not a file`]);
  // (a byte-order mark, as some editors save one, would be read as part of the first name)
  const text = readFileSync(path, 'utf8').replace(/^\uFEFF/, '');
  const parsed = parseEnv(text);
  refuse(envFileProblems(path, text, parsed));
  const out = [];
  for (const [name, value] of Object.entries(parsed)) {
    // (a `# …` name — an indented comment — is no variable: envFileProblems lets it be)
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name) || process.env[name] !== undefined) continue;
    out.push(name, value.replace(/\0/g, ''));
  }
  if (out.length) process.stdout.write(out.join('\0') + '\0');
}

/** Ends the script as a refused configuration (exit 78) when there is a problem, naming each. */
function refuse(problems) {
  if (problems.length === 0) return;
  for (const problem of problems) console.error(problem);
  process.exit(78);
}

/**
 * What in the file would be read otherwise than meant, never quoting a value: a line that is
 * neither NAME=value nor a # comment (Node's parser makes it part of the next line's name: that
 * variable lost) and a name set twice — the rules of src/config/env-file.ts (envFileProblems),
 * which the processes apply; kept here as this script runs before anything is installed or built.
 */
function envFileProblems(file, text, parsed) {
  const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
  const problems = [];
  for (const [name, value] of Object.entries(parsed)) {
    if (NAME.test(name)) continue;
    if (name.trimStart().startsWith('#') && !name.includes('\n')) {
      // an indented comment holding a `=`: read as a variable named `# …`, never used — harmless,
      // unless its value opens a quote: the lines after it, to the next quote, are then its value
      if (!value.includes('\n')) continue;
      problems.push(
        `${file}: an indented # comment opens a quote its line does not close (the lines after it, to the next quote, are read as its value: their variables would be lost)`,
      );
      continue;
    }
    const lines = name.split('\n');
    const swallowed = lines.pop();
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
  const seen = new Set();
  // the lines of values spanning lines (quoted): an assignment-looking line among them is part of
  // a value, not a second setting of its name (third review: `NOTE="see\nHOST=x"` beside a real
  // HOST was refused as HOST set twice)
  const valueLines = new Set(Object.values(parsed).flatMap((value) => value.split('\n').slice(1)));
  // (a value's last line, in the text, goes on with its closing quote)
  const isValueLine = (line) =>
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
