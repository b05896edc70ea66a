// The build compiles src/, migrations/ and ormconfig.ts under dist/ (rootDir is the repo root);
// these two shims give the documented entry points `node dist/main.js` and `node dist/worker.js`.
const { writeFileSync } = require('node:fs');
const { join } = require('node:path');
const dist = join(__dirname, '..', 'dist');
writeFileSync(join(dist, 'main.js'), "require('./src/main');\n");
writeFileSync(join(dist, 'worker.js'), "require('./src/worker');\n");
