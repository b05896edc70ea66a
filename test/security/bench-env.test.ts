import { benchApiEnv } from '../../bench/support';
import { loadConfig } from '../../src/config/config';

/**
 * The benchmarks run the built API in production (bench/support.ts): their configuration must
 * pass every check a production boot makes — a check added for deployments (a predictable
 * JWT_SECRET, a store on this machine) once refused it, and every `npm run bench:*` stopped at
 * "API did not become ready".
 */
describe('the benchmarks boot the API as production boots it', () => {
  it('their environment passes the production configuration checks', () => {
    const env = {
      ...benchApiEnv(),
      DATABASE_URL: 'postgres://shop@127.0.0.1:5432/shop_bench',
      PORT: '3000',
    };
    expect(() => loadConfig(env)).not.toThrow();
    expect(loadConfig(env).isDevelopment).toBe(false);
  });

  it('with rate limiting on, as a deployment keeps it, trusting the load generator as a proxy', () => {
    const config = loadConfig({
      ...benchApiEnv(),
      DATABASE_URL: 'postgres://shop@127.0.0.1:5432/shop_bench',
      PORT: '3000',
    });
    expect(config.rateLimitEnabled).toBe(true);
    expect(config.signIn.enabled).toBe(true);
    // (the load's X-Forwarded-For names its clients: bench/support.ts clientAddress)
    expect(config.http.trustProxy).toBe('loopback');
  });
});
