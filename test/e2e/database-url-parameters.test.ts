import { DataSource } from 'typeorm';
import { TestApp, bootTestApp } from '../support/test-app';

/**
 * node-postgres lets a connection URL's parameters replace the config's: a DATABASE_URL with
 * `?options=` (a search_path, a provider's endpoint) dropped the app's server-side settings, and
 * one with `?application_name=` the names the lock sessions are recognised by.
 */
describe('DATABASE_URL parameters never replace the settings the app sets itself', () => {
  let base: TestApp;
  let t: TestApp;

  beforeAll(async () => {
    base = await bootTestApp();
    const options = encodeURIComponent(
      '-c search_path=public,pg_catalog -c idle_in_transaction_session_timeout=20000',
    );
    t = await bootTestApp({
      db: base.db,
      env: { DATABASE_URL: `${base.db.url}?options=${options}&application_name=someone-else` },
    });
  });
  afterAll(async () => {
    await t?.close();
    await base?.close();
  });

  it("keeps the app's keepalives and name, adds the URL's options (the same setting given there wins)", async () => {
    const ds = t.app.get(DataSource);
    const [row] = await ds.query<Record<string, string>[]>(
      `SELECT current_setting('search_path') AS search_path,
              current_setting('idle_in_transaction_session_timeout') AS idle,
              current_setting('tcp_keepalives_idle') AS keepalive,
              current_setting('application_name') AS name`,
    );
    expect(row).toEqual({
      search_path: 'public,pg_catalog',
      idle: '20s',
      keepalive: '10',
      name: 'shop-orders',
    });
    // the app works through it
    expect((await t.http.get('/v1/categories')).status).toBe(200);
    const names = await base.db.pool.query<{ name: string }>(
      `SELECT DISTINCT application_name AS name FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'someone-else'`,
    );
    expect(names.rows).toEqual([]);
  });
});
