import { sweepPrivateServers } from './leftover-servers';
import {
  dropTestDatabases,
  migrate,
  serverUrl,
  templateDatabase,
  withAdminClient,
} from './databases';

/**
 * Migrates a fresh template database once per run (through the real migration CLI), so each
 * test file can clone it in milliseconds with CREATE DATABASE … TEMPLATE.
 */
export default async function globalSetup(): Promise<void> {
  process.env.SHOP_TEST_RUN = String(process.pid);
  // the template's migration runs the CLI in the repo root: a developer's .env must not reach it
  process.env.ENV_FILE = '';
  sweepPrivateServers({ own: false });
  await withAdminClient(async (c) => {
    await dropTestDatabases(c, { own: true });
    await c.query(`CREATE DATABASE "${templateDatabase()}"`);
  });
  migrate(serverUrl(templateDatabase()));
}
