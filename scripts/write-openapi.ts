import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Test } from '@nestjs/testing';
import { createFastifyAdapter } from '../src/app.setup';
import { AppModule } from '../src/app.module';
import { loadConfig } from '../src/config/config';
import { buildOpenApiDocument } from '../src/openapi/openapi';
import { CLIENT_SCHEMA } from '../test/client/schema-path';

/**
 * Regenerates the committed openapi.json from the code (`npm run openapi`), strictly (an
 * operation without summary, description or unique operationId stops it), then the typed
 * client schema the contract test compiles against (test/client/schema.d.ts). The module is
 * built in-process with development config (no secrets needed, nothing served); the
 * development-only routes are excluded from the document (@ApiExcludeController).
 */
async function main(): Promise<void> {
  const config = loadConfig({ ...process.env, NODE_ENV: 'development', LOG_LEVEL: 'silent' });
  const moduleRef = await Test.createTestingModule({
    imports: [AppModule.register(config)],
  }).compile();
  const app = moduleRef.createNestApplication(createFastifyAdapter(config));
  await app.init();
  const doc = buildOpenApiDocument(app, { strict: true });
  const root = join(__dirname, '..');
  writeFileSync(join(root, 'openapi.json'), `${JSON.stringify(doc, null, 2)}\n`);
  await app.close();
  execFileSync(process.execPath, [openapiTypescriptCli(), 'openapi.json', '-o', CLIENT_SCHEMA], {
    cwd: root,
    stdio: 'inherit',
  });
}

/** openapi-typescript's command line (its package exports map `bin/*.js` to files it lacks). */
function openapiTypescriptCli(): string {
  return join(dirname(require.resolve('openapi-typescript/package.json')), 'bin', 'cli.js');
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
