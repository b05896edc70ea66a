import { readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { alive, dropTestDatabases, withAdminClient } from './databases';
import { sweepPrivateServers } from './leftover-servers';

export default async function globalTeardown(): Promise<void> {
  await withAdminClient((c) => dropTestDatabases(c, { own: true }));
  // private servers of tests that did not stop theirs (a crashed test file), or of runs that died
  sweepPrivateServers({ own: true });
  // the .eml folders of test processes that are gone (test/support/env.ts, test-app.ts)
  for (const name of readdirSync(tmpdir())) {
    const pid = Number(/^shop-test-mail-(\d+)$/.exec(name)?.[1]);
    if (Number.isFinite(pid) && pid > 0 && !alive(pid))
      rmSync(join(tmpdir(), name), { recursive: true, force: true });
  }
}
