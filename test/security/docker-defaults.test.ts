import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig } from '../../src/config/config';

const ROOT = join(__dirname, '..', '..');

/** The `ENV name=value …` pairs of the Dockerfile's runtime stage (continuation lines joined). */
function runtimeEnv(): Record<string, string> {
  const text = readFileSync(join(ROOT, 'docker', 'Dockerfile'), 'utf8').replace(/\\\n/g, ' ');
  const runtime = text.slice(text.lastIndexOf('FROM '));
  const env: Record<string, string> = {};
  for (const line of runtime.split('\n')) {
    const m = /^ENV\s+(.*)$/.exec(line.trim());
    if (!m) continue;
    for (const pair of m[1].trim().split(/\s+/)) {
      const [name, ...value] = pair.split('=');
      env[name] = value.join('=');
    }
  }
  return env;
}

/**
 * The image must not undo the config's secure defaults. A development instance (public built-in
 * JWT secret, demo admin, simulated payments) binds loopback unless HOST says otherwise; an image
 * that set HOST=0.0.0.0 made `docker run -e NODE_ENV=development -p 3000:3000` reachable from the
 * network, where anyone could sign an admin token with the built-in secret.
 */
describe('the Docker image keeps the secure defaults', () => {
  it('sets NODE_ENV=production and no HOST: production binds every interface, development only loopback', () => {
    const env = runtimeEnv();
    expect(env.NODE_ENV).toBe('production');
    expect(env.HOST).toBeUndefined();
    const dev = loadConfig({ ...env, NODE_ENV: 'development' });
    expect(dev.http.host).toBe('127.0.0.1');
    expect(dev.metricsHost).toBe('127.0.0.1');
  });

  it("the compose file's PostgreSQL copies no failing statement into its log (the checkout's values are inlined)", () => {
    const compose = readFileSync(join(ROOT, 'docker', 'compose.yml'), 'utf8');
    expect(compose).toMatch(/command: \["postgres", "-c", "log_min_error_statement=panic"\]/);
  });

  it('the compose file passes on the settings a deployment behind a proxy must be able to give (they were dropped)', () => {
    const compose = readFileSync(join(ROOT, 'docker', 'compose.yml'), 'utf8');
    for (const name of [
      'TRUST_PROXY',
      'MAIL_FROM',
      'SHOP_CURRENCY',
      'PURCHASE_LIMIT_UNITS_PER_PRODUCT',
      'PURCHASE_LIMIT_OPEN_ORDERS',
      'PURCHASE_LIMIT_ABANDONED_PER_DAY',
      'API_PROCESSES',
      'LOG_LEVEL',
      'SHUTDOWN_DELAY_MS',
    ]) {
      expect({ name, passed: new RegExp(`^ {4}${name}: \\$\\{${name}:-`, 'm').test(compose) }).toEqual({ name, passed: true });
    }
  });

  it('the compose file sets no HOST either (production there binds every interface by default)', () => {
    const compose = readFileSync(join(ROOT, 'docker', 'compose.yml'), 'utf8');
    expect(compose).not.toMatch(/^\s+HOST:/m);
  });
});
