import { Logger } from '@nestjs/common';
import { join } from 'node:path';
import { DataSource } from 'typeorm';
import type { AppConfig } from '../../src/config/config';
import { EXIT_CONFIG } from '../../src/config/exit-codes';
import {
  DatabaseMismatch,
  SchemaCheck,
  newestMigrationOf,
  sameDatabase,
} from '../../src/health/schema-check';
import { ROOT } from '../support/processes';
import { TestApp, bootTestApp } from '../support/test-app';
import { TestDatabase, createTestDatabase } from '../support/test-database';

/**
 * What a process checks of its database at boot (operator review): a build started before its
 * migrations booted, said ready and answered 500 on every route touching a new table; and a
 * DATABASE_LOCK_URL pointing at another database had `migration:run` migrate that one (exit 0)
 * while the API on the unmigrated one said ready.
 */
describe('the database a process boots on', () => {
  let t: TestApp;
  let other: TestDatabase;
  beforeAll(async () => {
    t = await bootTestApp();
    other = await createTestDatabase();
  });
  afterAll(async () => {
    await t?.close();
    await other?.drop();
  });
  afterEach(() => jest.restoreAllMocks());

  const newest = newestMigrationOf(join(ROOT, 'migrations'))!;
  const checkWith = (database: Partial<AppConfig['database']>) =>
    new SchemaCheck(t.app.get(DataSource), {
      database: { ...t.config.database, ...database },
    } as AppConfig);

  it("reads the build's newest migration from its folder", () => {
    expect(newest).toBeGreaterThan(1_763_800_000_000);
    expect(newestMigrationOf(join(ROOT, 'no-such-folder'))).toBeNull();
  });

  it('boots on a schema as new as the build or newer (the previous build during a rolling deploy); refuses one behind it, naming the migrations to run (exit code EXIT_CONFIG)', async () => {
    await expect(checkWith({}).onApplicationBootstrap()).resolves.toBeUndefined();
    const db = t.db.pool;
    // a build newer than the database: its newest migration not recorded
    const { rows } = await db.query(
      `DELETE FROM schema_migrations WHERE "timestamp" = $1 RETURNING id, "timestamp", name`,
      [newest],
    );
    expect(rows).toHaveLength(1);
    try {
      const refused = checkWith({}).onApplicationBootstrap();
      await expect(refused).rejects.toBeInstanceOf(DatabaseMismatch);
      await expect(refused).rejects.toMatchObject({
        exitCode: EXIT_CONFIG,
        message: expect.stringContaining('run the migrations first'),
      });
      // the database ahead of the build: fine
      await db.query(
        `INSERT INTO schema_migrations ("timestamp", name) VALUES ($1, 'FromANewerBuild')`,
        [newest + 1000],
      );
      await expect(checkWith({}).onApplicationBootstrap()).resolves.toBeUndefined();
    } finally {
      await db.query(`DELETE FROM schema_migrations WHERE name = 'FromANewerBuild'`);
      await db.query(`INSERT INTO schema_migrations (id, "timestamp", name) VALUES ($1, $2, $3)`, [
        rows[0].id,
        rows[0].timestamp,
        rows[0].name,
      ]);
    }
  });

  it('refuses a DATABASE_LOCK_URL that reaches another database, naming it, or whose server refuses its sign-in; boots with one reaching the same database another way, or one that does not answer (said at warn)', async () => {
    const refused = checkWith({ lockUrl: other.url }).onApplicationBootstrap();
    await expect(refused).rejects.toBeInstanceOf(DatabaseMismatch);
    await expect(refused).rejects.toMatchObject({
      exitCode: EXIT_CONFIG,
      message: expect.stringContaining(
        `DATABASE_LOCK_URL reaches another database (${other.name})`,
      ),
    });
    const sameAnotherWay = new URL(t.db.url);
    sameAnotherWay.hostname = 'localhost';
    sameAnotherWay.searchParams.set('application_name', 'elsewhere');
    // (a session that shows times otherwise: a role with a TimeZone and DateStyle of its own)
    sameAnotherWay.searchParams.set('options', '-c TimeZone=Europe/Berlin -c DateStyle=SQL,DMY');
    await expect(
      checkWith({ lockUrl: sameAnotherWay.toString() }).onApplicationBootstrap(),
    ).resolves.toBeUndefined();
    const warns = jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    const down = new URL(t.db.url);
    down.port = '1';
    await expect(
      checkWith({ lockUrl: down.toString() }).onApplicationBootstrap(),
    ).resolves.toBeUndefined();
    expect(warns.mock.calls.map(([m]) => String(m))).toEqual([
      expect.stringContaining('DATABASE_LOCK_URL not checked at boot: the database did not answer'),
    ]);
    // one that answers by refusing the sign-in (a stale password, a role that does not exist) is
    // no database away: refused (exit code EXIT_CONFIG), naming the SQLSTATE and the reason
    const stale = new URL(t.db.url);
    stale.username = 'stale_role';
    await expect(
      checkWith({ lockUrl: stale.toString() }).onApplicationBootstrap(),
    ).rejects.toMatchObject({
      exitCode: EXIT_CONFIG,
      message: expect.stringContaining(
        'DATABASE_LOCK_URL: the database refused the connection (SQLSTATE 28000: role "stale_role" does not exist)',
      ),
    });
  });

  it("compares the cluster's system identifier only where both roles may read it", () => {
    const db = {
      system: '7715960409549805705',
      oid: '16384',
      name: 'shop',
      started: '1796512080123456',
    };
    expect(sameDatabase(db, { ...db })).toBe(true);
    expect(sameDatabase(db, { ...db, system: null })).toBe(true);
    expect(sameDatabase({ ...db, system: null }, db)).toBe(true);
    expect(sameDatabase(db, { ...db, system: '1' })).toBe(false);
    expect(sameDatabase(db, { ...db, oid: '16385' })).toBe(false);
    expect(sameDatabase(db, { ...db, name: 'shop_staging' })).toBe(false);
    // another server made by the same script, the identifier unreadable: its start differs
    expect(sameDatabase({ ...db, system: null }, { ...db, started: '1796112000500000' })).toBe(
      false,
    );
    // the identifier readable on both sides: it decides (a start read otherwise cannot refuse)
    expect(sameDatabase(db, { ...db, started: '1796112000500000' })).toBe(true);
  });

  it('a process pointed at such a lock URL does not boot', async () => {
    await expect(bootTestApp({ db: t.db, env: { DATABASE_LOCK_URL: other.url } })).rejects.toThrow(
      DatabaseMismatch,
    );
  });
});
