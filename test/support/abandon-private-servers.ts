import { PrivatePostgres } from './private-postgres';
import { PrivateRedis } from './private-redis';

/**
 * A test process that starts a private PostgreSQL and Redis and exits without stopping them (as
 * a run interrupted by Ctrl-C does): prints `<data folder> <redis port>` (leftover-servers.test.ts).
 */
async function main(): Promise<void> {
  const pg = await PrivatePostgres.start();
  const redis = await PrivateRedis.start();
  process.stdout.write(`${pg.dataDir} ${redis.port}\n`);
  process.exit(0);
}
void main();
