// For the shell scripts (start.sh, ensure-services.sh): prints the `.env` entries the
// environment does not set yet, as NUL-separated name/value pairs, parsed by Node's own parser
// (the one behind `node --env-file` and src/config/env-file.ts), never by a shell: values with
// spaces, <…>, quotes, $ or backticks arrive verbatim and nothing in .env is ever executed.
//   while IFS= read -r -d '' k && IFS= read -r -d '' v; do export "$k=$v"; done < <(node scripts/dotenv.js)
const { existsSync, readFileSync } = require('node:fs');
const { parseEnv } = require('node:util');

// ENV_FILE names another file (it must exist); ENV_FILE= (empty) reads none (as src/config/env-file.ts)
const chosen = process.env.ENV_FILE;
if (chosen && !existsSync(chosen)) {
  console.error(`ENV_FILE: no such file "${chosen}"`);
  process.exit(78); // a refused configuration, as the processes' own (src/config/exit-codes.ts)
}
const path = chosen === undefined ? '.env' : chosen;
if (path && existsSync(path)) {
  const out = [];
  for (const [name, value] of Object.entries(parseEnv(readFileSync(path, 'utf8')))) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name) || process.env[name] !== undefined) continue;
    out.push(name, value.replace(/\0/g, ''));
  }
  if (out.length) process.stdout.write(out.join('\0') + '\0');
}
