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
      '-c search_path=public,pg_catalog -c idle_in_transaction_session_timeout=20000 -c shop.order_status_repair=on',
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

  it("never lets the orders' repair switch on for the app: the URL's options cannot (the app's off comes last), nor a default the app's role could set", async () => {
    const ds = t.app.get(DataSource);
    const [row] = await ds.query<{ repair: string }[]>(
      `SELECT current_setting('shop.order_status_repair', true) AS repair`,
    );
    expect(row.repair).toBe('off');
    const { rows } = await base.db.pool.query<{ id: string }>(
      `WITH u AS (INSERT INTO users (email, password_hash, name)
                  VALUES ('repair-' || gen_random_uuid() || '@shop.example', 'x', 'Repair')
                  RETURNING id)
       INSERT INTO orders (id, user_id, status, cancellation_reason, currency, total_amount, created_at, updated_at)
       SELECT gen_random_uuid(), u.id, 'CANCELLED', 'CUSTOMER_REQUESTED', 'INR', 100, now(), now()
         FROM u
       RETURNING id`,
    );
    await expect(
      ds.query(`UPDATE orders SET status = 'PAID', cancellation_reason = NULL WHERE id = $1`, [
        rows[0].id,
      ]),
    ).rejects.toMatchObject({ driverError: expect.objectContaining({ code: '23514' }) });
    // nor can the app's role give itself a default for it, for its database or for itself
    const database = (
      await base.db.pool.query<{ name: string }>('SELECT current_database() AS name')
    ).rows[0].name;
    for (const statement of [
      `ALTER DATABASE "${database}" SET shop.order_status_repair = 'on'`,
      `ALTER ROLE CURRENT_USER SET shop.order_status_repair = 'on'`,
    ])
      await expect(base.db.pool.query(statement)).rejects.toThrow(/permission denied/);
  });
});
