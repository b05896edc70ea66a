import 'reflect-metadata';
import { loadDatabaseConfig } from './src/config/config';
import { loadEnvFile } from './src/config/env-file';
import { dataSourceOptions } from './src/database/data-source-options';
import { MigratingDataSource } from './src/database/migrating-data-source';

/**
 * The DataSource used by the TypeORM CLI (migration:run / revert / generate), built from the
 * same configuration and options as the application. Works from sources (ts-node) and from dist/.
 * Migrating needs only DATABASE_URL (from the environment or .env): no application secrets,
 * whatever NODE_ENV is.
 */
loadEnvFile(); // .env in the working directory, if any; the real environment wins
const database = loadDatabaseConfig(process.env);
export default new MigratingDataSource(
  dataSourceOptions(database.url, { withMigrations: true, rootDir: __dirname }),
);
