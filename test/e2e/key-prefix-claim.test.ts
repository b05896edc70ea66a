import { randomUUID } from 'node:crypto';
import { AddressInfo, connect, createServer } from 'node:net';
import type { INestApplicationContext } from '@nestjs/common';
import { Queue } from 'bullmq';
import Redis from 'ioredis';
import { DataSource } from 'typeorm';
import { EXIT_CONFIG } from '../../src/config/exit-codes';
import { queueConnectionOptions } from '../../src/queue/redis-connection';
import { JobName, QueueName } from '../../src/queue/queues';
import { KeyPrefixClaim, PrefixInUse, databaseIdentity } from '../../src/redis/key-prefix-claim';
import { createRedisClient } from '../../src/redis/redis.module';
import { freePort } from '../support/ports';
import { runScript } from '../support/processes';
import { TestApp, bootTestApp } from '../support/test-app';
import { TestDatabase, createTestDatabase } from '../support/test-database';
import { bootTestWorker } from '../support/test-worker';
import { waitFor } from '../support/wait-for';

/**
 * REDIS_KEY_PREFIX belongs to one database (src/redis/key-prefix-claim.ts): a second deployment
 * on the same Redis and prefix, with a database of its own, refuses to boot while the first runs,
 * its worker never taking or publishing the first one's jobs; a claim that lapsed (a deployment
 * stopped) is taken over; a process whose prefix is taken from under it by an older deployment
 * stops (exit code EXIT_CONFIG), and an older deployment takes its prefix back from a younger one.
 */
describe('REDIS_KEY_PREFIX claimed for one database', () => {
  let a: TestApp;
  let redis: Redis;
  let other: TestDatabase;
  /** Processes this file started, and prefixes it used (beside a's): none outlives it. */
  const spawned: ReturnType<typeof runScript>[] = [];
  const prefixes: string[] = [];
  const prefixOf = (suffix: string) => {
    const prefix = `${a.config.redis.keyPrefix}${suffix}`;
    prefixes.push(prefix);
    return prefix;
  };
  const spawn = (...args: Parameters<typeof runScript>) => {
    const p = runScript(...args);
    spawned.push(p);
    return p;
  };
  /** A process's exit code, or a failure naming its output if it never exits. */
  const exitOf = async (p: ReturnType<typeof runScript>) => {
    const code = await Promise.race([
      p.exited,
      new Promise<'running'>((r) => setTimeout(() => r('running'), 45_000).unref()),
    ]);
    if (code === 'running') throw new Error(`still running:\n${p.output().slice(-3000)}`);
    return code;
  };

  /** Whether `value` is the claim of `identity` (`<hash> <name>`): `<hash> <tenure> <name>`. */
  const claimOf = (identity: string) => {
    const [hash, name] = identity.split(' ');
    return new RegExp(`^${hash} \\d+ ${name}$`);
  };

  /**
   * Another deployment's claim of `prefix`, renewed (its heartbeat) until stopped. (Never of
   * `a`'s prefix: `a` runs in this process, and a process whose claim is taken stops.)
   */
  function foreignClaim(prefix: string, ttlMs: number, renewEveryMs?: number): () => Promise<void> {
    let last: Promise<unknown> = Promise.resolve();
    const set = () =>
      (last = redis.set(`${prefix}:owner`, '00000000deadbeef shop_staging', 'PX', ttlMs));
    void set();
    const timer = renewEveryMs ? setInterval(() => void set(), renewEveryMs) : undefined;
    // stopped once its last renewal has landed: one still on its way (a loaded machine) renewed
    // the claim after a boot had measured its time to live, and the boot found it alive still
    return async () => {
      clearInterval(timer);
      await last.catch(() => undefined);
    };
  }

  /** A claim in this process whose loss is recorded instead of stopping the process. */
  class InProcessClaim extends KeyPrefixClaim {
    lostWith?: Error;
    protected override lost(err: PrefixInUse): void {
      this.lostWith = err;
    }
  }
  /** The app's kind of Redis client, connected, and a configuration on `prefix`. */
  async function claimSetup(prefix: string, name = 'test') {
    const client = createRedisClient(a.config.redis.url, `${prefix}:${name}`);
    await new Promise((resolve) => client.once('ready', resolve));
    return { client, config: { ...a.config, redis: { ...a.config.redis, keyPrefix: prefix } } };
  }
  const fakeDatabase = (row: () => { system: string; oid: string; name: string }) =>
    ({ query: async () => [row()] }) as unknown as DataSource;

  beforeAll(async () => {
    a = await bootTestApp();
    redis = new Redis(a.config.redis.url);
    other = await createTestDatabase();
  });
  afterEach(async () => {
    for (const p of spawned.splice(0)) {
      if (p.proc.exitCode === null && p.proc.signalCode === null) p.proc.kill('SIGKILL');
      await p.exited;
    }
  });
  afterAll(async () => {
    for (const prefix of prefixes) {
      const keys = await redis.keys(`${prefix}:*`);
      if (keys.length > 0) await redis.unlink(...keys);
    }
    await a?.close();
    await other?.drop();
    redis?.disconnect();
  });

  it("holds the prefix for its database's identity, renewed with a TTL", async () => {
    const identity = await databaseIdentity(a.app.get(DataSource));
    expect(identity).toMatch(new RegExp(`^[0-9a-f]{16} ${a.db.name}$`));
    expect(await redis.get(`${a.config.redis.keyPrefix}:owner`)).toMatch(claimOf(identity));
    expect(await redis.pttl(`${a.config.redis.keyPrefix}:owner`)).toBeGreaterThan(0);
    expect(await a.metrics()).toMatch(/^redis_key_prefix_claim_state 1$/m);
    const before = await redis.get(`${a.config.redis.keyPrefix}:owner`);
    // a second API process of the same deployment shares the claim (and its tenure)
    const b = await bootTestApp({ db: a.db, env: { REDIS_KEY_PREFIX: a.config.redis.keyPrefix } });
    try {
      expect(await redis.get(`${a.config.redis.keyPrefix}:owner`)).toBe(before);
    } finally {
      await b.close();
    }
  });

  it('an API of another database on the same prefix waits for the claim to lapse, then refuses to boot while it is kept alive (exit 78)', async () => {
    const prefix = prefixOf('s');
    const stop = foreignClaim(prefix, 2_000, 200);
    try {
      const api = spawn(
        'src/main.ts',
        { DATABASE_URL: other.url, REDIS_KEY_PREFIX: prefix, PORT: String(await freePort()) },
        'warn',
      );
      // in this process as well (bootTestApp), meanwhile: each waits for the claim to lapse
      const inProcess = bootTestApp({ db: other, env: { REDIS_KEY_PREFIX: prefix } });
      const [code] = await Promise.all([
        exitOf(api),
        expect(inProcess).rejects.toThrow(/REDIS_KEY_PREFIX is in use by another deployment/),
      ]);
      expect(code).toBe(EXIT_CONFIG);
      expect(api.output()).toMatch(
        /REDIS_KEY_PREFIX is in use by another deployment.*database shop_staging.*, renewed while this process waited \d s for it to lapse/,
      );
    } finally {
      await stop();
    }
  });

  it('a claim that lapses (the other deployment stopped) is taken over at boot; an older deployment taking it from under that API stops it (one API process)', async () => {
    const prefix = prefixOf('x');
    // the other deployment's claim is renewed until the API's first attempt has found it (seen
    // on Redis's MONITOR), then that deployment stops: its claim lapses while the API waits. (The
    // MONITOR is read off a plain socket: ioredis's monitor connection, fed every other test's
    // commands, now and then took a line for a reply — "Command queue state error" — and failed
    // the test; the API's own warning is no signal either, its logger buffering it.) Its TTL, 3 s,
    // is how long the API waits: the MONITOR's line came late on a loaded machine (it carries
    // every other test's commands) and, with 1.5 s, the claim was renewed while the API waited.
    const stop = foreignClaim(prefix, 3_000, 200);
    const server = new URL(a.config.redis.url);
    const monitor = connect(Number(server.port || 6379), server.hostname);
    const attempted = new Promise<void>((resolve, reject) => {
      let pending = '';
      monitor.on('error', reject);
      // (after the signal: a destroy in `finally`; before it, Redis went away)
      monitor.on('close', () => reject(new Error('Redis closed the monitor connection')));
      monitor.on('data', (chunk: Buffer) => {
        const lines = (pending + chunk.toString('latin1')).split('\r\n');
        pending = lines.pop() ?? '';
        const refused = lines.find((l) => l.startsWith('-'));
        if (refused) reject(new Error(`Redis refused the monitor: ${refused}`));
        if (
          lines.some(
            (l) => /^\+[\d.]+ \[.*?\] "eval(sha)?" /i.test(l) && l.includes(` "${prefix}:owner"`),
          )
        )
          resolve();
      });
    });
    // as the URL says (a password, a database), then MONITOR: RESP arrays, whatever they hold
    const command = (...args: string[]) =>
      `*${args.length}\r\n${args.map((x) => `$${Buffer.byteLength(x)}\r\n${x}\r\n`).join('')}`;
    const password = decodeURIComponent(server.password);
    const user = decodeURIComponent(server.username);
    const database = server.pathname.replace('/', '');
    await new Promise<void>((resolve) =>
      monitor.write(
        (password ? command('AUTH', ...(user ? [user] : []), password) : '') +
          (database ? command('SELECT', database) : '') +
          command('MONITOR'),
        () => resolve(),
      ),
    );
    const port = await freePort();
    const api = spawn(
      'src/main.ts',
      { DATABASE_URL: other.url, REDIS_KEY_PREFIX: prefix, PORT: String(port) },
      'warn',
    );
    try {
      await attempted;
    } finally {
      await stop();
      monitor.destroy();
    }
    await waitFor(
      'the API up',
      () => fetch(`http://127.0.0.1:${port}/health/ready`).then((r) => r.ok),
      { retryErrors: true, timeoutMs: 30_000, context: api.output },
    );
    expect(api.output()).toMatch(/waiting \d s to see whether it lapses/);
    const identity = await databaseIdentity(fakeOf(other));
    expect(await redis.get(`${prefix}:owner`)).toMatch(claimOf(identity));
    // then a process whose prefix an older deployment takes from under it stops (the cluster's
    // primary as well: the last test)
    await takenFromUnder(prefix, api);
  });

  it("a worker of another database refuses to boot and takes none of the prefix's jobs", async () => {
    const prefix = prefixOf('w');
    const queue = new Queue(QueueName.Catalog, {
      connection: queueConnectionOptions(a.config.redis.url),
      prefix: `${prefix}:bull`,
    });
    const stop = foreignClaim(prefix, 600, 100);
    let worker: INestApplicationContext | undefined;
    try {
      const job = await queue.add(JobName.RecomputeRecommendations, {});
      const w = spawn(
        'src/worker.ts',
        { DATABASE_URL: other.url, REDIS_KEY_PREFIX: prefix },
        'warn',
      );
      expect(await exitOf(w)).toBe(EXIT_CONFIG);
      expect(w.output()).toMatch(/REDIS_KEY_PREFIX is in use by another deployment/);
      expect(await job.getState()).toBe('waiting');
      // the other deployment stops (its claim lapses): this database's worker takes the job
      await stop();
      worker = await bootTestWorker({
        ...a.config,
        redis: { ...a.config.redis, keyPrefix: prefix },
      });
      await waitFor('the job taken once the prefix is ours', async () =>
        (await job.getState()) === 'completed' ? true : undefined,
      );
      expect(await redis.get(`${prefix}:owner`)).toMatch(
        claimOf(await databaseIdentity(a.app.get(DataSource))),
      );
    } finally {
      await stop();
      await worker?.close();
      await queue.close();
    }
  });

  it('a worker of another database that boots while Redis is down publishes nothing into the prefix once Redis is back, and stops', async () => {
    // Redis "down": the worker reaches it through a gate that refuses connections until the
    // test has put production's claim there (so the worker cannot claim the free key first)
    let open = false;
    const gate = createServer((socket) => {
      if (!open) return socket.destroy();
      const upstream = connect(Number(new URL(a.config.redis.url).port || 6379), '127.0.0.1');
      socket.pipe(upstream).pipe(socket);
      const end = () => {
        socket.destroy();
        upstream.destroy();
      };
      socket.on('error', end).on('close', end);
      upstream.on('error', end).on('close', end);
    });
    await new Promise<void>((resolve) => gate.listen(0, '127.0.0.1', resolve));
    const prefix = prefixOf('r');
    const eventId = randomUUID();
    await other.pool.query(
      `INSERT INTO outbox (id, topic, payload, next_attempt_at, created_at)
       VALUES ($1, 'order.paid', jsonb_build_object('orderId', gen_random_uuid()), now(), now())`,
      [eventId],
    );
    try {
      const w = spawn(
        'src/worker.ts',
        {
          DATABASE_URL: other.url,
          REDIS_URL: `redis://127.0.0.1:${(gate.address() as AddressInfo).port}`,
          REDIS_KEY_PREFIX: prefix,
        },
        'info', // ('worker started')
      );
      await waitFor(
        'the worker booted, Redis down',
        async () => (/worker started/.test(w.output()) ? true : undefined),
        { timeoutMs: 30_000, context: w.output },
      );
      // Redis back, the prefix held by production (since long before)
      await redis.set(`${prefix}:owner`, '00000000deadbeef 1 shop_production');
      open = true;
      expect(await exitOf(w)).toBe(EXIT_CONFIG);
      expect(w.output()).toMatch(/REDIS_KEY_PREFIX is in use by another deployment/);
      const [row] = (
        await other.pool.query<{ status: string; published_at: Date | null }>(
          `SELECT status, published_at FROM outbox WHERE id = $1`,
          [eventId],
        )
      ).rows;
      expect(row).toEqual({ status: 'pending', published_at: null });
      expect(await redis.keys(`${prefix}:bull:*`)).toEqual([]);
    } finally {
      await new Promise((resolve) => gate.close(resolve));
    }
  });

  it('processes of one deployment never stop each other when its database moves (one reads the new identity late)', async () => {
    const prefix = prefixOf('d');
    const [{ client: clientA, config }, { client: clientC }] = await Promise.all([
      claimSetup(prefix, 'a'),
      claimSetup(prefix, 'c'),
    ]);
    let oid = '1';
    let lateFails = false;
    const row = () => ({ system: '7', oid, name: 'shop' });
    const moved = new InProcessClaim(clientA, fakeDatabase(row), config);
    expect(moved.state).toBe('waiting'); // (not booted yet: nothing held)
    const late = new InProcessClaim(
      clientC,
      {
        query: async () => {
          if (lateFails) throw new Error('connection reset');
          return [row()];
        },
      } as unknown as DataSource,
      config,
    );
    try {
      await moved.onApplicationBootstrap();
      await late.onApplicationBootstrap();
      const before = (await redis.get(`${prefix}:owner`)) as string;
      // the database moves; one process's reads fail for a while (the cut-over)
      oid = '2';
      lateFails = true;
      await moved['renew'](); // reads the new identity
      await moved['renew'](); // moves the claim to it
      expect((await redis.get(`${prefix}:owner`))?.split(' ')[0]).not.toBe(before.split(' ')[0]);
      await late['renew'](); // still the old identity: the same deployment (its tenure), not lost
      expect(late.lostWith).toBeUndefined();
      lateFails = false;
      await late['renew']();
      await late['renew']();
      await moved['renew']();
      expect([moved.lostWith, late.lostWith]).toEqual([undefined, undefined]);
      expect(await redis.get(`${prefix}:owner`)).toMatch(/ shop$/);
    } finally {
      moved.onApplicationShutdown();
      late.onApplicationShutdown();
      clientA.disconnect();
      clientC.disconnect();
    }
  });

  it('after Redis lost its keys, the deployment that held the prefix takes it back from one that booted meanwhile; that one stops', async () => {
    const prefix = prefixOf('t');
    const { client, config } = await claimSetup(prefix);
    const running = new InProcessClaim(
      client,
      fakeDatabase(() => ({ system: '1', oid: '1', name: 'shop_production' })),
      config,
    );
    const newcomer = new InProcessClaim(
      client,
      fakeDatabase(() => ({ system: '2', oid: '2', name: 'shop_staging' })),
      config,
    );
    try {
      await running.onApplicationBootstrap();
      const held = (await redis.get(`${prefix}:owner`)) as string;
      expect(held).toMatch(/ shop_production$/);
      // Redis restarts empty; a misconfigured deployment boots meanwhile and claims it first
      await redis.del(`${prefix}:owner`);
      await newcomer.onApplicationBootstrap();
      expect(await redis.get(`${prefix}:owner`)).toMatch(/ shop_staging$/);
      // the running deployment's connection comes back: it takes its prefix back, tenure and all
      client.emit('ready');
      await waitFor('the prefix taken back', async () =>
        (await redis.get(`${prefix}:owner`)) === held ? true : undefined,
      );
      // and the newcomer, at its next heartbeat, stops
      client.emit('ready');
      await waitFor('the newcomer stopped', async () => newcomer.lostWith);
      expect([running.state, newcomer.state]).toEqual(['held', 'stopped']);
      expect(newcomer.lostWith?.message).toMatch(/database shop_production/);
      expect(running.lostWith).toBeUndefined();
      expect(await redis.get(`${prefix}:owner`)).toBe(held);
    } finally {
      running.onApplicationShutdown();
      newcomer.onApplicationShutdown();
      client.disconnect();
    }
  });

  it('a process whose database moved (a restore behind the same URL) carries its claim over', async () => {
    const prefix = prefixOf('m');
    const { client, config } = await claimSetup(prefix);
    let oid = '1';
    const movable = fakeDatabase(() => ({ system: '42', oid, name: 'shop' }));
    const running = new InProcessClaim(client, movable, config);
    try {
      await running.onApplicationBootstrap();
      const before = await redis.get(`${prefix}:owner`);
      expect(before).toMatch(/ shop$/);
      // the database is restored into a new cluster behind the URL: a new oid; the running
      // process's next heartbeats (here: its Redis connection back) read it and move the claim
      oid = '2';
      await waitFor('the claim moved', async () => {
        client.emit('ready');
        const now = await redis.get(`${prefix}:owner`);
        return now !== before ? now : undefined;
      });
      // so a process started after the move boots at once, sharing it
      const started = new InProcessClaim(client, movable, config);
      await started.onApplicationBootstrap();
      await expect(started.held()).resolves.toBeUndefined();
      started.onApplicationShutdown();
      expect(running.lostWith).toBeUndefined();
    } finally {
      running.onApplicationShutdown();
      client.disconnect();
    }
  });

  // (one API process: the lapsed claim's test, with the API that took it over)
  it('a process whose prefix an older deployment takes from under it stops (API_PROCESSES=2)', async () => {
    // the cluster's primary stops too (78) rather than replacing its processes, refused for ever
    const prefix = prefixOf('y1');
    const port = await freePort();
    const api = spawn(
      'src/main.ts',
      { DATABASE_URL: other.url, REDIS_KEY_PREFIX: prefix, PORT: String(port), API_PROCESSES: '2' },
      'warn',
    );
    await waitFor(
      'the API up',
      () => fetch(`http://127.0.0.1:${port}/health/ready`).then((r) => r.ok),
      { retryErrors: true, timeoutMs: 30_000, context: api.output },
    );
    await takenFromUnder(prefix, api);
  });

  /**
   * Redis lost its keys and a deployment that held `prefix` before the API `api` took it first;
   * the API's connections come back: it stops, exit code EXIT_CONFIG.
   */
  async function takenFromUnder(prefix: string, api: ReturnType<typeof runScript>) {
    await redis.set(`${prefix}:owner`, '00000000deadbeef 1 shop_staging');
    const clients = await redis.client('LIST');
    const ids = String(clients)
      .split('\n')
      .filter((line) => line.includes(` name=${prefix}:app `))
      .map((line) => /^id=(\d+)/.exec(line)?.[1]);
    expect(ids.length).toBeGreaterThan(0);
    for (const id of ids) await redis.client('KILL', 'ID', id as string);
    expect(await exitOf(api)).toBe(EXIT_CONFIG);
    expect(api.output()).toMatch(/REDIS_KEY_PREFIX is in use by another deployment/);
  }

  it('a role that may not read the system identifier is never refused it (the refusal was logged at every heartbeat); a grant made later is seen at the next read', async () => {
    const sent: string[] = [];
    let granted = false;
    const pool = {
      query: async (sql: string) => {
        sent.push(sql);
        if (sql.includes('FROM pg_control_system()') && !granted)
          throw Object.assign(new Error('permission denied for function pg_control_system'), {
            code: '42501',
          });
        const rows = (await a.db.pool.query(sql)).rows as Record<string, unknown>[];
        return sql.includes('has_function_privilege')
          ? rows.map((r) => ({ ...r, allowed: granted }))
          : rows;
      },
    } as unknown as DataSource;
    const denied = await databaseIdentity(pool);
    expect(await databaseIdentity(pool)).toBe(denied);
    expect(sent.filter((q) => q.includes('FROM pg_control_system()'))).toEqual([]);
    granted = true;
    const readable = await databaseIdentity(pool);
    expect(readable).not.toBe(denied);
    expect(readable).toBe(await databaseIdentity(a.app.get(DataSource)));
  });

  /** `databaseIdentity` of a test database, read over its own pool. */
  function fakeOf(db: TestDatabase): DataSource {
    return {
      query: (sql: string) => db.pool.query(sql).then((r) => r.rows),
    } as unknown as DataSource;
  }
});
