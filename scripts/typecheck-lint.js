// `npm test`'s typecheck and lint in one process, on one TypeScript program: what
// `npx tsc -p tsconfig.json --noEmit` reports (var/checks/typecheck.log) and what
// `npx eslint . --max-warnings 0` reports (var/checks/lint.log), each with its own exit code
// (var/checks/<name>.rc: 0 clean, 1 problems, 2 it could not run). Apart, each built and checked
// the whole program on its own (~40 and ~77 CPU-s alone here; more beside jest); here ESLint's typed
// rules read the types the typecheck has already resolved (~70 CPU-s for both). `npm run typecheck`
// and `npm run lint` stay what a developer runs.
'use strict';
const { mkdirSync, writeFileSync } = require('node:fs');
const { join } = require('node:path');
const ts = require('typescript');
const { ESLint } = require('eslint');

const root = join(__dirname, '..');
const out = process.argv[2] ?? join(root, 'var', 'checks');

function record(name, rc, text) {
  writeFileSync(join(out, `${name}.log`), text);
  writeFileSync(join(out, `${name}.rc`), `${rc}\n`);
}

/** The program tsc would check, and what it reports (config, options, syntax and types). */
function typecheck() {
  const host = {
    ...ts.sys,
    onUnRecoverableConfigFileDiagnostic: (d) => {
      throw new Error(ts.flattenDiagnosticMessageText(d.messageText, '\n'));
    },
  };
  const config = ts.getParsedCommandLineOfConfigFile(
    join(root, 'tsconfig.json'),
    { noEmit: true },
    host,
  );
  const program = ts.createProgram({
    rootNames: config.fileNames,
    options: config.options,
    projectReferences: config.projectReferences,
    configFileParsingDiagnostics: config.errors,
  });
  // (the configuration's own problems included: given to the program above)
  const diagnostics = ts.getPreEmitDiagnostics(program);
  const text = ts.formatDiagnostics(diagnostics, {
    getCanonicalFileName: (f) => f,
    getCurrentDirectory: () => root,
    getNewLine: () => '\n',
  });
  return { program, failed: diagnostics.length > 0, text };
}

/** ESLint on the same program (eslint.config.mjs as is, its project service swapped for it). */
async function lint(program) {
  const eslint = new ESLint({
    cwd: root,
    overrideConfig: {
      languageOptions: { parserOptions: { projectService: false, programs: [program] } },
    },
  });
  const results = await eslint.lintFiles(['.']);
  const problems = results.reduce((n, r) => n + r.errorCount + r.warningCount, 0);
  const text = await (await eslint.loadFormatter('stylish')).format(results);
  return { failed: problems > 0, text };
}

async function main() {
  mkdirSync(out, { recursive: true });
  let program;
  try {
    const checked = typecheck();
    program = checked.program;
    record('typecheck', checked.failed ? 1 : 0, checked.text);
  } catch (err) {
    record('typecheck', 2, `${err instanceof Error ? err.stack : String(err)}\n`);
    record('lint', 2, 'not run: the typecheck could not build the program\n');
    return;
  }
  try {
    const linted = await lint(program);
    record('lint', linted.failed ? 1 : 0, linted.text);
  } catch (err) {
    record('lint', 2, `${err instanceof Error ? err.stack : String(err)}\n`);
  }
}

void main();
