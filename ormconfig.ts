import 'reflect-metadata';
import { loadDatabaseConfig } from './src/config/config';
import { loadEnvFile } from './src/config/env-file';
import { dataSourceOptions } from './src/database/data-source-options';
import { MigratingDataSource } from './src/database/migrating-data-source';

/**
 * The DataSource used by the TypeORM CLI (migration:run / revert / generate), built from the
 * same configuration and options as the application. Works from sources (scripts/ts-register.js) and from dist/.
 * Migrating needs only DATABASE_URL (from the environment or .env): no application secrets,
 * whatever NODE_ENV is. It connects over DATABASE_LOCK_URL when that is set — the route to
 * PostgreSQL directly (or a session-mode pool) beside a transaction-mode PgBouncer on
 * DATABASE_URL: through that bouncer the run lock, a session advisory lock, leaked to a server
 * connection and the next deploy's migration waited for it with no timeout, and the migrations'
 * `lock_timeout` (a startup option) was refused or dropped.
 */
loadEnvFile(); // .env in the working directory, if any; the real environment wins
const database = loadDatabaseConfig(process.env);
export default new MigratingDataSource(
  dataSourceOptions(database.lockUrl, { withMigrations: true, rootDir: __dirname }),
);
