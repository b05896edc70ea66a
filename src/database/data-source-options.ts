import { join } from 'node:path';
import type { DataSourceOptions } from 'typeorm';
import { SafeTypeOrmLogger } from './typeorm-logger';

/**
 * The one description of the PostgreSQL connection, shared by the app (TypeOrmModule),
 * the migration CLI (ormconfig.ts) and the test harness.
 */
export function dataSourceOptions(
  url: string,
  opts: { poolSize?: number; withMigrations?: boolean; rootDir?: string } = {},
): DataSourceOptions {
  const root = opts.rootDir ?? join(__dirname, '..', '..');
  return {
    type: 'postgres',
    url,
    synchronize: false,
    migrationsRun: false,
    migrationsTableName: 'schema_migrations',
    entities: [join(root, 'src', '**', '*.entity.{ts,js}')],
    migrations: opts.withMigrations ? [join(root, 'migrations', '*.{ts,js}')] : [],
    extra: {
      max: opts.poolSize ?? 20,
      connectionTimeoutMillis: 5000,
      idleTimeoutMillis: 30_000,
      application_name: 'shop-orders',
    },
    // failed queries by SQLSTATE and statement head only, never with their parameters
    logger: new SafeTypeOrmLogger(),
    logging: ['error', 'warn', 'migration'],
  };
}
