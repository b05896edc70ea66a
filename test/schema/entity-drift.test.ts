import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { createTestDatabase, type TestDatabase } from '../support/test-database';

/**
 * The entities and the migrations describe the same schema: `migration:generate --check` against a
 * freshly migrated database finds nothing to generate. A column, index, constraint or default
 * changed on one side only fails here (TypeORM prints the statements it would generate).
 */
describe('TypeORM entities against the migrations', () => {
  let db: TestDatabase;

  beforeAll(async () => {
    db = await createTestDatabase();
  });

  afterAll(async () => {
    await db.drop();
  });

  it('migration:generate --check finds no drift', () => {
    const root = join(__dirname, '..', '..');
    const run = spawnSync(
      process.execPath,
      [
        '-r',
        join(root, 'scripts', 'ts-register.js'),
        join(root, 'node_modules', 'typeorm', 'cli.js'),
        'migration:generate',
        '-d',
        join(root, 'ormconfig.ts'),
        '--check',
        '--dryrun',
        join(root, 'migrations', 'Drift'),
      ],
      { cwd: root, encoding: 'utf8', env: { ...process.env, DATABASE_URL: db.url } },
    );
    const output = `${run.stdout}\n${run.stderr}`;
    expect({ status: run.status, output }).toEqual({
      status: 0,
      output: expect.stringContaining('No changes in database schema were found'),
    });
  });
});
