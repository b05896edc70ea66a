// Runs TypeScript sources directly: npm start, the dev and CLI scripts, migrations, benchmarks,
// the failure drill and the processes tests start. `node -r ./scripts/ts-register.js file.ts`.
//
// swc transpiles each .ts file as it is required, with the options jest uses
// (scripts/swc-options.js, checked against tsconfig.json by test/e2e/ts-register.test.ts), and no
// type-check (`npm run typecheck` does that). The output is kept in
// node_modules/.cache/ts-register/, one file per source, named by a hash of swc's version, the
// exact options given to it, the path and the content: an edited file is transpiled again. A file
// is written under a temporary name then renamed, so processes starting at once never read half of
// one; a cached file without its source map at the end (cut short, damaged) is not used.
// Stack traces point into the .ts sources: source-map-support reads a transpiled file's inline
// map only when a stack trace is formatted, and leaves the packages' frames as they are (Node's
// own --enable-source-maps reads the map of every package file at load, ~0.4 s per start).
//
// (This was ts-node with its swc transpiler. ts-node loads TypeScript itself to read
// tsconfig.json, and transpiles every file on every start: loading the application took
// 2.3 CPU-s, against 1.7 here.)
'use strict';
const { addHook } = require('pirates');
const { createHash, randomBytes } = require('node:crypto');
const { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } = require('node:fs');
const { join } = require('node:path');
const sourceMapSupport = require('source-map-support');
const options = require('./swc-options');
// swc (~0.05 CPU-s to load with its native binding) only on a cache miss: a start whose files
// are all transpiled already never needs it; its version, for the cache key, from package.json
const { version } = JSON.parse(readFileSync(require.resolve('@swc/core/package.json'), 'utf8'));

const cacheDir = join(__dirname, '..', 'node_modules', '.cache', 'ts-register');
const transformOptions = { ...options, sourceMaps: 'inline' };
const salt = `ts-register 1\0${version}\0${JSON.stringify(transformOptions)}\0`;
/** A transpiled file ends with its inline source map: one that does not was cut short. */
const INLINE_MAP = /\n\/\/# sourceMappingURL=data:application\/json;base64,[A-Za-z0-9+/=]+\s*$/;
/** What each .ts file of this process was transpiled to (its source map at the end). */
const transpiled = new Map();

function transpile(code, filename) {
  const out = cachedTranspile(code, filename);
  transpiled.set(filename, out);
  return out;
}

function cachedTranspile(code, filename) {
  const key = createHash('sha256').update(salt).update(filename).update('\0').update(code).digest('hex');
  const cached = join(cacheDir, `${key}.js`);
  try {
    const out = readFileSync(cached, 'utf8');
    if (INLINE_MAP.test(out)) return out;
  } catch {
    // not transpiled yet (or changed since)
  }
  const out = require('@swc/core').transformSync(code, { ...transformOptions, filename }).code;
  const partial = `${cached}.${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    mkdirSync(cacheDir, { recursive: true });
    writeFileSync(partial, out);
    renameSync(partial, cached);
  } catch {
    // a cache that cannot be written (a full disk, a read-only folder) only makes the next start
    // slower; nothing half-written stays behind
    try {
      rmSync(partial, { force: true });
    } catch {
      // (nothing was written there either)
    }
  }
  return out;
}

addHook(transpile, { exts: ['.ts'], ignoreNodeModules: true });
sourceMapSupport.install({
  environment: 'node',
  // the process's own handling of uncaught errors stays as it was
  handleUncaughtExceptions: false,
  // it reads files only through this: a transpiled file's inline map is found in what this
  // process transpiled; a package's frames keep their .js paths, and its .map files are never
  // read (typeorm's are ~300 KB each: a stall on the first error through it)
  overrideRetrieveFile: true,
  retrieveFile: (path) => transpiled.get(path) ?? null,
});
