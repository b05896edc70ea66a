import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Test } from '@nestjs/testing';
import { createFastifyAdapter } from '../src/app.setup';
import { AppModule } from '../src/app.module';
import { loadConfig } from '../src/config/config';
import { buildOpenApiDocument } from '../src/common/http/openapi';

/**
 * Regenerates the committed openapi.json from the code (`npm run openapi`). The document
 * describes a development instance (it includes the dev-only confirm route), whatever the
 * caller's NODE_ENV: it only builds the module in-process and never serves anything.
 */
async function main(): Promise<void> {
  const config = loadConfig({ ...process.env, NODE_ENV: 'development', LOG_LEVEL: 'silent' });
  const moduleRef = await Test.createTestingModule({ imports: [AppModule.register(config)] }).compile();
  const app = moduleRef.createNestApplication(createFastifyAdapter(config));
  await app.init();
  const doc = buildOpenApiDocument(app);
  writeFileSync(join(__dirname, '..', 'openapi.json'), `${JSON.stringify(doc, null, 2)}\n`);
  await app.close();
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
