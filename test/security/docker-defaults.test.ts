import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CONFIG_VARIABLES, loadConfig } from '../../src/config/config';

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
  it("keeps every .env and private key out of the build context, in any folder (docker/.env is compose's)", () => {
    const patterns = readFileSync(join(ROOT, '.dockerignore'), 'utf8')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'));
    expect(patterns).toEqual(
      expect.arrayContaining(['**/.env', '**/.env.*', '**/*.pem', '**/*.key']),
    );
    expect(patterns).toContain('!.env.example');
  });

  it("every install the project's commands run (npm start's, npm test's, the image's) runs no dependency's install scripts: npm 10 ignores package.json's allowScripts", () => {
    const installs = ['scripts/start.sh', 'scripts/test.sh', 'docker/Dockerfile'].flatMap((file) =>
      readFileSync(join(ROOT, file), 'utf8')
        .split('\n')
        .filter((line) => /^\s*(RUN\s+)?npm (ci|install|i)\b/.test(line))
        .map((line) => [file, line.trim()]),
    );
    expect(installs.map(([file]) => file)).toEqual(
      expect.arrayContaining(['scripts/start.sh', 'scripts/test.sh', 'docker/Dockerfile']),
    );
    expect(installs.filter(([, line]) => !/\s--ignore-scripts\b/.test(line))).toEqual([]);
  });

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

  it('the compose file passes on every setting the app reads but HOST (one left out was silently ignored)', () => {
    const compose = readFileSync(join(ROOT, 'docker', 'compose.yml'), 'utf8');
    const fixed = [
      'NODE_ENV',
      'PORT',
      'DATABASE_URL',
      'REDIS_URL',
      // its own network's servers, which publish no port: plain text to them is meant
      'SERVICES_PRIVATE_NETWORK',
      'METRICS_PORT',
      'METRICS_HOST',
      'WORKER_METRICS_PORT',
    ];
    const missing = CONFIG_VARIABLES.filter(
      (name) =>
        name !== 'HOST' &&
        !(
          fixed.includes(name)
            ? new RegExp(`^ {4}${name}: `, 'm')
            : new RegExp(`^ {4}${name}: \\$\\{${name}:-`, 'm')
        ).test(compose),
    );
    expect(missing).toEqual([]);
    expect(compose).not.toMatch(/^ {4}HOST: /m);
    expect(compose).toMatch(/^ {4}SERVICES_PRIVATE_NETWORK: "postgres,redis"$/m);
    // which holds only while PostgreSQL and Redis publish no port beyond the stack
    for (const service of ['postgres', 'redis']) {
      const block = compose.split(new RegExp(`^  ${service}:$`, 'm'))[1].split(/^ {2}\w/m)[0];
      expect({ service, ports: /^ {4}ports:/m.test(block) }).toEqual({ service, ports: false });
    }
  });

  it("README's Configuration table and .env.example name every setting the app reads (one missing from either was a setting nobody could find)", () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const table = readme.slice(readme.indexOf('## Configuration'), readme.indexOf('## Commands'));
    const example = readFileSync(join(ROOT, '.env.example'), 'utf8');
    expect(
      CONFIG_VARIABLES.filter((name) => !new RegExp(`^\\| [^|]*\`${name}\``, 'm').test(table)),
    ).toEqual([]);
    expect(
      CONFIG_VARIABLES.filter((name) => !new RegExp(`^(# ?)?${name}=`, 'm').test(example)),
    ).toEqual([]);
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
      'SHUTDOWN_TIMEOUT_MS',
    ]) {
      expect({
        name,
        passed: new RegExp(`^ {4}${name}: \\$\\{${name}:-`, 'm').test(compose),
      }).toEqual({ name, passed: true });
    }
  });

  it("the supervisor's grace period outlasts the processes' drain by default, and moves with it (STOP_GRACE_PERIOD)", () => {
    const compose = readFileSync(join(ROOT, 'docker', 'compose.yml'), 'utf8');
    const grace = /^ {2}stop_grace_period: \$\{STOP_GRACE_PERIOD:-(\d+)s\}$/m.exec(compose);
    expect(grace).not.toBeNull();
    const defaults = (name: string) =>
      Number(new RegExp(`^ {4}${name}: \\$\\{${name}:-(\\d+)\\}`, 'm').exec(compose)?.[1]);
    const config = loadConfig({
      NODE_ENV: 'development', // (only the two values below are read)
      SHUTDOWN_DELAY_MS: String(defaults('SHUTDOWN_DELAY_MS')),
      SHUTDOWN_TIMEOUT_MS: String(defaults('SHUTDOWN_TIMEOUT_MS')),
    });
    // the processes' own bound (src/common/shutdown.ts): delay + timeout + 5 s
    expect(Number(grace![1]) * 1000).toBeGreaterThan(
      config.http.shutdownDelayMs + config.http.shutdownTimeoutMs + 5_000,
    );
  });

  it('the full stack keeps PostgreSQL and Redis to itself, with passwords it requires; the development one is a file of its own', () => {
    // published at a local checkout's default URLs with shop/shop and no Redis password, the
    // production databases were open to any process on the host — `npm start` there joined them
    const compose = readFileSync(join(ROOT, 'docker', 'compose.yml'), 'utf8');
    const services = compose.slice(compose.indexOf('\nservices:'));
    const block = (name: string) =>
      services.slice(
        services.indexOf(`\n  ${name}:`),
        services.indexOf('\n\n', services.indexOf(`\n  ${name}:`)),
      );
    for (const name of ['postgres', 'redis'])
      expect({ name, ports: /\n {4}ports:/.test(block(name)) }).toEqual({ name, ports: false });
    expect(block('postgres')).toMatch(/POSTGRES_PASSWORD: \$\{POSTGRES_PASSWORD:\?/);
    expect(block('redis')).toMatch(/"--requirepass", "\$\{REDIS_PASSWORD:\?/);
    expect(compose).toMatch(
      /DATABASE_URL: postgres:\/\/shop:\$\{POSTGRES_PASSWORD:\?[^}]*\}@postgres:5432\/shop/,
    );
    expect(compose).toMatch(/REDIS_URL: redis:\/\/:\$\{REDIS_PASSWORD:\?[^}]*\}@redis:6379/);
    expect(compose).not.toMatch(/shop:shop@/);
    const dev = readFileSync(join(ROOT, 'docker', 'compose.services.yml'), 'utf8');
    expect(dev).toMatch(/"127\.0\.0\.1:5432:5432"/);
    expect(dev).toMatch(/command: \["postgres", "-c", "log_min_error_statement=panic"\]/);
    expect(dev).not.toMatch(/\n {2}(api|worker|migrate):/);
  });

  it('the compose file sets no HOST either (production there binds every interface by default)', () => {
    const compose = readFileSync(join(ROOT, 'docker', 'compose.yml'), 'utf8');
    expect(compose).not.toMatch(/^\s+HOST:/m);
  });
});
