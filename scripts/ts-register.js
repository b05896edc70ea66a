// Runs TypeScript sources directly (dev, migrations, scripts): swc transpile, no type-check.
// (ts-node reads no TS_NODE_SWC variable: the option is given here, or TypeScript's own
// transpiler compiles every file, ~2 s of each start)
require('ts-node').register({ swc: true });
