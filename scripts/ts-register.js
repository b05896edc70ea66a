// Runs TypeScript sources directly (dev, migrations, scripts): swc transpile, no type-check.
process.env.TS_NODE_TRANSPILE_ONLY = 'true';
process.env.TS_NODE_SWC = 'true';
require('ts-node').register();
