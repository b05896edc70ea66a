import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { DataSource } from 'typeorm';
import type { AppConfig } from '../../src/config/config';
import { EXIT_CONFIG } from '../../src/config/exit-codes';
import { dataSourceOptions } from '../../src/database/data-source-options';
import { DatabaseMismatch, SchemaCheck } from '../../src/health/schema-check';
import { createEmptyDatabase } from '../support/test-database';
import type { TestDatabase } from '../support/test-database';

const ROOT = join(__dirname, '..', '..');

/**
 * A database not encoded UTF8 (`createdb -E SQL_ASCII --locale=C -T template0`) passed the early
 * migrations, then failed half migrated with the server's raw errors (Unicode normalization,
 * `collation "und-x-icu" … does not exist`). The migrations refuse it before the first one, and a
 * process refuses to boot on it (exit code EXIT_CONFIG), both naming UTF8.
 */
describe('a database not in UTF8', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createEmptyDatabase(
      `ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0`,
    );
  });
  afterAll(async () => {
    await db?.drop();
  });

  it('npm run migration:run refuses it before the first migration, naming UTF8', async () => {
    const run = spawnSync('npm', ['run', '--silent', 'migration:run'], {
      cwd: ROOT,
      encoding: 'utf8',
      env: { ...process.env, DATABASE_URL: db.url },
    });
    expect(run.status).toBe(1);
    expect(`${run.stdout}\n${run.stderr}`).toContain(
      `The database "${db.name}" is encoded SQL_ASCII: this application needs a UTF8 database`,
    );
    const { rows } = await db.pool.query(
      `SELECT count(*)::int AS n FROM pg_class WHERE relnamespace = 'public'::regnamespace`,
    );
    expect(rows[0].n).toBe(0); // nothing migrated
  });

  it('the boot check refuses it (exit code EXIT_CONFIG), naming UTF8', async () => {
    const source = new DataSource({ ...dataSourceOptions(db.url), logging: false });
    await source.initialize();
    try {
      const check = new SchemaCheck(source, {
        database: { url: db.url, lockUrl: db.url },
      } as AppConfig);
      const refused = check.onApplicationBootstrap();
      await expect(refused).rejects.toBeInstanceOf(DatabaseMismatch);
      await expect(refused).rejects.toMatchObject({
        exitCode: EXIT_CONFIG,
        message: expect.stringContaining('is encoded SQL_ASCII: this application needs a UTF8'),
      });
    } finally {
      await source.destroy();
    }
  });
});
