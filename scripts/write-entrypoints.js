// The build compiles src/, migrations/, ormconfig.ts, scripts/admin-create.ts and
// scripts/payments-orphans.ts under dist/ (rootDir is the repo root); these two shims give the
// documented entry points `node dist/main.js` and `node dist/worker.js` (the first admin:
// `node dist/scripts/admin-create.js`; after a restore: `node dist/scripts/payments-orphans.js`).
const { writeFileSync } = require('node:fs');
const { join } = require('node:path');
// (a directory of another build may be named: the tests build into one of their own)
const dist = process.argv[2] ?? join(__dirname, '..', 'dist');
writeFileSync(join(dist, 'main.js'), "require('./src/main');\n");
writeFileSync(join(dist, 'worker.js'), "require('./src/worker');\n");
