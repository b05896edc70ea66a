import 'reflect-metadata';
import { DataSource } from 'typeorm';
import { loadConfig } from './src/config/config';
import { dataSourceOptions } from './src/database/data-source-options';

/**
 * The DataSource used by the TypeORM CLI (migration:run / revert / generate), built from the
 * same configuration and options as the application. Works from sources (ts-node) and from dist/.
 */
const config = loadConfig(process.env);
export default new DataSource(
  dataSourceOptions(config.database.url, { withMigrations: true, rootDir: __dirname }),
);
