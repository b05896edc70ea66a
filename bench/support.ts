import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { randomBytes, randomUUID } from 'node:crypto';
import { createApp } from '../src/app.setup';
import { type AppConfig, loadConfig, loadDatabaseConfig } from '../src/config/config';
import { loadEnvFile } from '../src/config/env-file';

const ROOT = join(__dirname, '..');

/** The server the benchmarks use: DATABASE_URL, else (a development machine) the local default. */
const serverUrl = (): string => loadDatabaseConfig({ NODE_ENV: 'development', ...process.env }).url;

/** A URL on the same server as DATABASE_URL, for another database. */
function databaseUrl(name: string): string {
  const url = new URL(serverUrl());
  url.pathname = `/${name}`;
  return url.toString();
}

/** Drops and recreates a benchmark database and migrates it with the real migration CLI. */
export async function freshDatabase(name: string): Promise<string> {
  const adminUrl = serverUrl();
  const admin = new Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
  await admin.query(`CREATE DATABASE "${name}"`);
  await admin.end();
  const url = databaseUrl(name);
  execFileSync(
    process.execPath,
    [
      '-r',
      './scripts/ts-register.js',
      'node_modules/typeorm/cli.js',
      'migration:run',
      '-d',
      'ormconfig.ts',
    ],
    {
      cwd: ROOT,
      env: { ...process.env, DATABASE_URL: url },
      stdio: ['ignore', 'ignore', 'inherit'],
    },
  );
  return url;
}

/** Peak resident set (VmHWM) and current resident set (VmRSS) of a process, in MiB (Linux). */
function memoryOf(pid: number | undefined): { peakMiB: number; rssMiB: number } | null {
  if (pid === undefined) return null;
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kib = (field: string) =>
      Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
    return { peakMiB: Math.round(kib('VmHWM') / 1024), rssMiB: Math.round(kib('VmRSS') / 1024) };
  } catch {
    return null;
  }
}

export interface ApiMemory {
  /** Each process: the API itself, or with API_PROCESSES > 1 the primary and its API processes. */
  processes: { pid: number; role: 'api' | 'primary' | 'worker'; peakMiB: number; rssMiB: number }[];
  /** The highest peak of a process serving requests (the target applies per process). */
  peakMiB: number;
  /** All processes' current resident sets added up. */
  totalRssMiB: number;
}

/** Peak and current resident memory of the API: its process, or its primary and API processes. */
export function apiMemory(pid: number | undefined): ApiMemory | null {
  if (pid === undefined) return null;
  let children: number[] = [];
  try {
    children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number);
  } catch {
    /* not Linux, or gone */
  }
  const processes: ApiMemory['processes'] = [];
  for (const [p, role] of [
    [pid, children.length > 0 ? 'primary' : 'api'],
    ...children.map((c) => [c, 'worker']),
  ] as [number, 'api' | 'primary' | 'worker'][]) {
    const m = memoryOf(p);
    if (m) processes.push({ pid: p, role, ...m });
  }
  if (processes.length === 0) return null;
  const serving = processes.filter((p) => p.role !== 'primary');
  return {
    processes,
    peakMiB: Math.max(...serving.map((p) => p.peakMiB)),
    totalRssMiB: processes.reduce((sum, p) => sum + p.rssMiB, 0),
  };
}

/**
 * "184 MiB peak (now 180 MiB), NODE_OPTIONS=`…`" for one process; per process and in total for a
 * primary with API processes. The figure depends on the V8 heap flags the API ran with (without
 * them V8 sizes its heap for ~4 GiB and lets garbage pile up), so they go with it.
 */
export function describeMemory(m: ApiMemory | null): string {
  return `${memoryFigures(m)}, ${apiNodeOptions()}`;
}

function memoryFigures(m: ApiMemory | null): string {
  if (!m) return 'n/a';
  if (m.processes.length === 1)
    return `${m.processes[0].peakMiB} MiB peak (now ${m.processes[0].rssMiB} MiB)`;
  const each = m.processes
    .map((p) => `${p.role} ${p.peakMiB} MiB peak (now ${p.rssMiB})`)
    .join(', ');
  return `${m.peakMiB} MiB peak per API process — ${each}; all together now ${m.totalRssMiB} MiB`;
}

/** How many API processes startApi() runs (API_PROCESSES from the environment; the app's default 1). */
export function apiProcessCount(): string {
  return process.env.API_PROCESSES ?? '1';
}

/**
 * The bare Nest + Fastify app (bench/baseline-app.ts) in a process of its own: the floor the
 * API's routes are compared with in the same run.
 */
export async function startBaseline(): Promise<{ url: string; proc: ChildProcess }> {
  const port = await freePort();
  const proc = spawn(
    process.execPath,
    ['-r', './scripts/ts-register.js', 'bench/baseline-app.ts'],
    {
      cwd: ROOT,
      env: { ...process.env, PORT: String(port) },
      stdio: ['ignore', 'inherit', 'inherit'],
    },
  );
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    if (
      (await fetch(`${url}/ping`).then(
        (r) => r.status,
        () => 0,
      )) === 200
    )
      return { url, proc };
    await new Promise((r) => setTimeout(r, 100));
  }
  proc.kill('SIGKILL');
  throw new Error('baseline app did not start');
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() =>
        typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port')),
      );
    });
  });
}

/** What a run measured: the commit, whether the code differed from it, and when. */
export interface RunProvenance {
  /** `git rev-parse --short HEAD`. */
  commit: string;
  /** Uncommitted changes (untracked files included) under src/, migrations/ or bench/. */
  dirty: boolean;
  at: Date;
}

/** The directories whose uncommitted changes make a run's figures not the commit's. */
const MEASURED_DIRS = [
  'src',
  'migrations',
  'bench',
  // what decides what `npm run build` compiles and which dependencies run
  'package.json',
  'package-lock.json',
  'tsconfig.json',
  'tsconfig.build.json',
  'nest-cli.json',
  'ormconfig.ts',
];

/** The commit checked out in `root` and whether src/ migrations/ bench/ differ from it, now. */
export function runProvenance(root = ROOT, at = new Date()): RunProvenance {
  const git = (...args: string[]) =>
    execFileSync('git', args, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  try {
    const status = git('status', '--porcelain', '--untracked-files=all', '--', ...MEASURED_DIRS);
    return { commit: git('rev-parse', '--short', 'HEAD').trim(), dirty: status.trim() !== '', at };
  } catch {
    // a source archive, or no git: the run is still measured, its commit not known
    return { commit: 'unknown', dirty: true, at };
  }
}

/** The line every generated block carries: commit, dirty flag, date and time (UTC). */
function describeProvenance(p: RunProvenance): string {
  const when = `${p.at.toISOString().slice(0, 16).replace('T', ' ')} UTC`;
  const changes = p.dirty
    ? "**dirty**: uncommitted changes under src/, migrations/, bench/ or the build's files were measured, not the commit alone"
    : "clean: no uncommitted changes under src/, migrations/, bench/ or the build's files";
  if (p.commit === 'unknown') return `Run: commit unknown (not a git checkout), ${when}.`;
  return `Run: commit \`${p.commit}\` (${changes}), ${when}.`;
}

/**
 * Compiles the app (`npm run build`) so benchmarks run what production runs; what was built
 * (the commit and whether src/, migrations/ or bench/ differed from it) as the build began.
 */
export function build(): RunProvenance {
  const provenance = runProvenance();
  execFileSync('npm', ['run', '--silent', 'build'], {
    cwd: ROOT,
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  return provenance;
}

/**
 * The V8 heap budget the API runs with (docker/Dockerfile sets the same NODE_OPTIONS): a 384 MiB
 * old-space ceiling makes V8 size its heap for a small process (with Node's default ~4 GiB
 * ceiling it lets ~130 MB of garbage pile up before a full collection, against a live heap of
 * ~45 MB); 12 MiB semi-spaces (8 MiB ones cost a cached
 * catalog read about 40% in scavenges for ~15 MiB less RSS; 16 MiB ones 5 MiB more RSS). `API_NODE_OPTIONS=` (empty) runs
 * the benchmarks without them.
 */
const API_NODE_OPTIONS =
  process.env.API_NODE_OPTIONS ?? '--max-old-space-size=384 --max-semi-space-size=12';

/** The API's NODE_OPTIONS as a block states them beside a memory figure. */
export function apiNodeOptions(): string {
  return API_NODE_OPTIONS.trim() === ''
    ? "NODE_OPTIONS empty (API_NODE_OPTIONS=): Node's default heap sizing, not the image's"
    : process.env.API_NODE_OPTIONS === undefined
      ? `NODE_OPTIONS=\`${API_NODE_OPTIONS}\`, as docker/Dockerfile sets them`
      : `NODE_OPTIONS=\`${API_NODE_OPTIONS}\` (API_NODE_OPTIONS, not the image's)`;
}

/**
 * Node flags NODE_OPTIONS refuses, for the API's command line: `API_NODE_ARGS='--cpu-prof
 * --cpu-prof-dir=/tmp/prof'` profiles the API under a benchmark's load (written when it stops).
 */
const API_NODE_ARGS = (process.env.API_NODE_ARGS ?? '').split(' ').filter(Boolean);

/** This run's secrets: random, as a deployment's must be (a production boot refuses weak ones). */
export const BENCH_SECRETS = {
  JWT_SECRET: randomBytes(48).toString('base64'),
  STORAGE_SECRET_ACCESS_KEY: randomBytes(20).toString('hex'),
  STORAGE_WEBHOOK_TOKEN: randomBytes(16).toString('hex'),
  STRIPE_WEBHOOK_SECRET: `whsec_${randomBytes(16).toString('hex')}`,
};

/**
 * The benchmarked API's environment: production, with this run's random secrets. The object
 * store is named by a public-looking address the benchmarks never reach (a store on this machine
 * refuses a production boot); the Stripe key is a test placeholder the benchmarks never use (no
 * payments), aimed at a closed port so nothing can reach Stripe. test/security/bench-env.test.ts
 * boots the configuration with it.
 *
 * Rate limiting is on, as a deployment keeps it (docker/compose.yml): no setting raises the
 * request policies' limits (src/common/throttling/rate-limit.policies.ts), so the load comes as
 * many clients — the API trusts the load generator on loopback as its proxy (TRUST_PROXY) and
 * each request names one of CLIENT_ADDRESSES in X-Forwarded-For (clientAddress); a benchmark whose
 * load no client count keeps under a limit turns it off and says why in its block (apiSettings).
 * LOG_LEVEL=warn, stated in every block (apiSettings).
 */
export function benchApiEnv(): Record<string, string> {
  return {
    NODE_ENV: 'production',
    REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
    // the shell's test services on a private network of their own, if it says so (a production
    // boot refuses them in plain text otherwise)
    ...(process.env.SERVICES_PRIVATE_NETWORK
      ? { SERVICES_PRIVATE_NETWORK: process.env.SERVICES_PRIVATE_NETWORK }
      : {}),
    ...BENCH_SECRETS,
    JWT_PRIVATE_KEY: '', // (a shell's key pair would refuse the boot beside JWT_SECRET)
    JWT_PUBLIC_KEY: '',
    STORAGE_ENDPOINT: 'https://storage.shop-bench.example.test',
    STORAGE_ACCESS_KEY_ID: 'bench-only-access-key',
    STRIPE_SECRET_KEY: 'sk_test_bench_only_unused',
    STRIPE_TEST_MODE: 'true',
    STRIPE_API_URL: 'http://127.0.0.1:9',
    METRICS_PORT: '0',
    // no mail server: the API sends none, and a production boot needs one or this, on purpose
    MAIL_OUTBOX_DIR: join(tmpdir(), 'shop-bench-mail'),
    LOG_LEVEL: 'warn',
    RATE_LIMIT_ENABLED: 'true',
    TRUST_PROXY: 'loopback', // the load generator stands for a proxy in front of many clients
    SHUTDOWN_DELAY_MS: '0', // no load balancer to wait for
  };
}

/**
 * How many client addresses the load comes from (BENCH_CLIENTS, default 8,000): each stays under
 * the per-IP `default` policy (300 requests a minute) up to 40,000 req/s to one API process for a
 * minute, and all of them fit the cached reads' per-process table (10,000 clients; one past it is
 * not counted at all, which would measure less work than a deployment does).
 */
export const CLIENT_ADDRESSES = Number(process.env.BENCH_CLIENTS ?? 8000);

/** The `i`-th client's address (10.0.0.0/8), the same one every CLIENT_ADDRESSES requests. */
export function clientAddress(i: number): string {
  const n = i % CLIENT_ADDRESSES;
  return `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`;
}

/**
 * The sentence every generated block carries about how the API ran where a deployment runs it
 * differently: its NODE_ENV, its log level and what that skips, whether rate limiting was on
 * — read from the environment it was started with; off needs `rateLimitsOff`, the reason — and
 * its argon2 computations at once (PASSWORD_HASH_CONCURRENCY, from the shell's environment: the
 * peak memory of a run that registers buyers depends on it).
 */
export function apiSettings(env: Record<string, string>, rateLimitsOff?: string): string {
  const full = apiEnvironment(env, 3000);
  const log =
    full.LOG_LEVEL === 'info'
      ? 'LOG_LEVEL=info, as a deployment'
      : `LOG_LEVEL=${full.LOG_LEVEL ?? 'info'}, not a deployment's \`info\` (docker/compose.yml): this run skips the per-request log lines \`info\` writes — an access line per request (cached catalog reads and health probes have none) and a \`command completed\` line per write, refusals included`;
  let limits: string;
  if (full.RATE_LIMIT_ENABLED === 'false') {
    if (!rateLimitsOff) throw new Error('rate limiting off: say why in the block');
    limits = `**rate limiting off** (RATE_LIMIT_ENABLED=false, where a deployment keeps it on): ${rateLimitsOff}`;
  } else {
    limits = `rate limiting on, as a deployment (the policies' own limits: no setting raises them), the load coming as ${CLIENT_ADDRESSES.toLocaleString('en')} clients — TRUST_PROXY=${full.TRUST_PROXY ?? 'false'} and each request naming one of ${CLIENT_ADDRESSES.toLocaleString('en')} addresses in X-Forwarded-For in turn — each under the per-IP limits; a 429 fails the run`;
  }
  const hashes = apiConfig(env).passwordHashConcurrency;
  return `NODE_ENV=${full.NODE_ENV ?? 'unset'}; ${log}; ${limits}; PASSWORD_HASH_CONCURRENCY=${hashes}`;
}

/**
 * The environment startApi() gives the API: this shell's, benchApiEnv(), the heap flags, then
 * the benchmark's own `env`.
 */
function apiEnvironment(
  env: Record<string, string>,
  port: number,
): Record<string, string | undefined> {
  return {
    ...process.env,
    ...benchApiEnv(),
    NODE_OPTIONS: API_NODE_OPTIONS,
    PORT: String(port),
    HOST: '127.0.0.1',
    ...env,
  };
}

/**
 * The database connections the API started with `env` may hold at once, read from the
 * configuration it boots with (the repository's .env filling what is unset, as the API's own
 * loadEnvFile does): DATABASE_POOL_SIZE (default 20) per API process.
 */
export function apiDatabaseConnections(env: Record<string, string>): number {
  const config = apiConfig(env);
  return config.database.poolSize * config.http.processes;
}

/** The configuration the API started with `env` boots with (the repository's .env included). */
function apiConfig(env: Record<string, string>): AppConfig {
  const full = apiEnvironment(env, 3000);
  if (full.ENV_FILE !== '') loadEnvFile(full.ENV_FILE ?? join(ROOT, '.env'), full);
  return loadConfig(full);
}

/** Starts the built API (`node dist/main.js`) with benchApiEnv(); resolves when ready. */
export async function startApi(
  env: Record<string, string>,
): Promise<{ url: string; proc: ChildProcess }> {
  const port = await freePort();
  const proc = spawn(process.execPath, [...API_NODE_ARGS, 'dist/main.js'], {
    cwd: ROOT,
    env: apiEnvironment(env, port),
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 1200; i++) {
    try {
      const res = await fetch(`${url}/health/ready`);
      if (res.status === 200) return { url, proc };
    } catch {
      /* not up yet */
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  proc.kill('SIGKILL');
  throw new Error('API did not become ready');
}

export async function stopApi(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null) return;
  await new Promise<void>((res) => {
    proc.once('exit', () => res());
    proc.kill('SIGTERM');
  });
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/**
 * `text` with the section between `<!-- name:start -->` and `<!-- name:end -->` replaced (or
 * appended): `markdown` with the run's provenance line under its heading.
 */
export function withBenchmarkSection(
  text: string,
  name: string,
  markdown: string,
  provenance: RunProvenance,
): string {
  const body = markdown.trim();
  const run = describeProvenance(provenance);
  // under the heading (`## …`), else first
  const heading = /^#[^\n]*\n/.exec(body)?.[0];
  const withRun = heading
    ? `${heading}\n${run}\n${body.slice(heading.length)}`
    : `${run}\n\n${body}`;
  const start = `<!-- ${name}:start -->`;
  const end = `<!-- ${name}:end -->`;
  const block = `${start}\n${withRun}\n${end}`;
  const re = new RegExp(`${start}[\\s\\S]*?${end}`);
  return re.test(text) ? text.replace(re, () => block) : `${text.trimEnd()}\n\n${block}\n`;
}

/** Replaces (or appends) the section `name` of docs/BENCHMARKS.md (withBenchmarkSection). */
export function writeBenchmarkSection(
  name: string,
  markdown: string,
  provenance: RunProvenance,
): void {
  const file = join(ROOT, 'docs', 'BENCHMARKS.md');
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    text =
      '# Benchmarks\n\nMeasured on the development machine (2 cores). Each benchmark measures its baseline in the same run and reports ratios against it.\n';
  }
  writeFileSync(file, withBenchmarkSection(text, name, markdown, provenance));
}

/**
 * The real app in this process (development config, a fresh database, rate limits off) with one
 * registered customer: for the auth micro-benchmarks, which time the guard's own work.
 */
export async function inProcessAppWithCustomer(
  name: string,
): Promise<{ app: NestFastifyApplication; base: string; accessToken: string }> {
  const config = loadConfig({
    ...process.env,
    NODE_ENV: 'development',
    DATABASE_URL: await freshDatabase(name),
    REDIS_KEY_PREFIX: `bench${randomUUID().slice(0, 6)}`,
    RATE_LIMIT_ENABLED: 'false',
    LOG_LEVEL: 'warn',
  });
  const app = await createApp(config);
  const port = await freePort();
  await app.listen({ port, host: '127.0.0.1' });
  const base = `http://127.0.0.1:${port}`;
  const res = await fetch(`${base}/v1/auth/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      email: `${randomUUID()}@bench.local`,
      password: 'bench-password',
      name: 'B',
    }),
  });
  const { accessToken } = (await res.json()) as { accessToken: string };
  return { app, base, accessToken };
}

/** `GET /v1/me` with one customer's token under autocannon load: req/s (fails on any non-2xx). */
export async function measureMe(
  base: string,
  accessToken: string,
  label: string,
  opts: { connections: number; duration: number },
): Promise<number> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const autocannon = require('autocannon') as (o: unknown) => Promise<any>;
  const r = await autocannon({
    url: `${base}/v1/me`,
    headers: { authorization: `Bearer ${accessToken}` },
    connections: opts.connections,
    duration: opts.duration,
  });
  if (r.non2xx > 0) throw new Error(`${r.non2xx} non-2xx answers`);
  console.log(
    `GET /v1/me ${label}: ${Math.round(r.requests.average)} req/s, ` +
      `p50 ${r.latency.p50} ms, p99 ${r.latency.p99} ms`,
  );
  return r.requests.average as number;
}
