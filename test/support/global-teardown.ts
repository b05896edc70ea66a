import { dropTestDatabases, withAdminClient } from './databases';

export default async function globalTeardown(): Promise<void> {
  await withAdminClient((c) => dropTestDatabases(c, { own: true }));
}
