import { Client } from 'pg';
import { loadConfig } from '../../src/config/config';

export const TEMPLATE_DB = 'shop_test_template';
export const TEST_DB_PREFIX = 'shop_test_';

/** The server that hosts the test databases: the one DATABASE_URL points at. */
export function serverUrl(database: string): string {
  const url = new URL(loadConfig(process.env).database.url);
  url.pathname = `/${database}`;
  return url.toString();
}

export function adminDatabase(): string {
  return new URL(loadConfig(process.env).database.url).pathname.slice(1) || 'postgres';
}

export async function withAdminClient<T>(fn: (c: Client) => Promise<T>): Promise<T> {
  const client = new Client({ connectionString: serverUrl(adminDatabase()) });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}
