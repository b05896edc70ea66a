import KeyvRedis, { createClient, type RedisClientOptions } from '@keyv/redis';
import { CACHE_MANAGER } from '@nestjs/cache-manager';
import { Inject, Injectable, Logger } from '@nestjs/common';
import type { Cache } from 'cache-manager';
import type Redis from 'ioredis';
import { createHash } from 'node:crypto';
import { Keyv } from 'keyv';
import { TransactionHost } from '../database/transaction-host';
import { Clock } from '../common/time/clock';
import { APP_CONFIG, AppConfig } from '../config/config';
import { REDIS, REDIS_SOCKET_TIMEOUT_MS, isReadOnlyReply } from '../redis/redis.module';
import { REDIS_OUTAGE_REPLY } from '../redis/outage-reply';
import { CoalescedVersionReader } from './catalog-version';
import { withTimeout } from '../common/with-timeout';
import { ConcurrencyGate, SlotCap } from '../common/throttling/concurrency-gate';
import { BuildBudget, Payer, Spend } from './build-budget';
import { cursorKeyFingerprint } from '../common/pagination/cursor';
import { MetricsService } from '../metrics/metrics.service';

/**
 * What the shared tier keeps per page: the JSON and when it expires (epoch ms), so that one GET
 * also tells how long an in-process copy may live (it expires with the Redis entry).
 */
interface SharedEntry {
  json: string;
  expiresAt: number;
}

/**
 * The form of SharedEntry, in every page's key (pageShapeOf): a build that stores pages in
 * another form changes it, and during a rolling deploy (or a rollback) each build reads only the
 * pages stored in its own form.
 */
const ENTRY_FORM = 1;

/**
 * Whether what the shared tier answered is a SharedEntry. Anything else — a value an operator
 * wrote, or one stored in another form by a build whose ENTRY_FORM was not changed — is a miss,
 * rebuilt and stored over: read as an entry, it threw (a 500 for every read of that page, for as
 * long as it was kept; one without a TTL, until the next catalog write).
 */
function isSharedEntry(value: unknown): value is SharedEntry {
  const entry = value as Partial<SharedEntry> | null;
  return (
    typeof entry === 'object' &&
    entry !== null &&
    typeof entry.json === 'string' &&
    typeof entry.expiresAt === 'number' &&
    Number.isFinite(entry.expiresAt)
  );
}

/** Cached pages live briefly: availability (on_hand − reserved) moves with every order. */
const CATALOG_TTL_MS = 5_000;
/** The longest an entry lives (the TTL plus up to 20% jitter), here and in Redis. */
const MAX_ENTRY_TTL_MS = CATALOG_TTL_MS * 1.2;
/**
 * The longest a memory copy of an entry read from Redis lives: its `expiresAt` is on the writer's
 * clock, and a reader whose clock runs behind it would keep the copy past the Redis entry (up
 * to a whole entry lifetime more). A hot page costs one Redis read a second per process for it
 * (requests that find the copy gone share the read under way: sharedReads).
 */
const COPY_OF_SHARED_MS = 1_000;
/** Bound on the in-process copies (a listing page of 20 is ~10 KB, of 100 ~50 KB). */
const MEMORY_ENTRIES = 2_000;
/**
 * …and on their size: 2,000 pages of 100 items (distinct `q`/cursor URLs are cheap to make)
 * would otherwise pin ~100 MB of strings in the API's heap. Sizes are counted in UTF-16 code
 * units (JSON.length), close to bytes for the Latin-1 strings V8 stores one byte per character.
 */
const MEMORY_CHARS = 16 * 1024 * 1024;
/** A single answer bigger than this is served from Redis only, never copied into memory. */
const MEMORY_MAX_ENTRY_CHARS = 1024 * 1024;
/**
 * A Redis that answers slower than this counts as unavailable for a read: the request goes to
 * PostgreSQL instead of waiting (a stalled or partitioned Redis keeps its socket open, so the
 * fail-fast client alone would wait as long as the stall).
 */
const CACHE_REDIS_TIMEOUT_MS = 250;
/** After a read failed or timed out, reads skip Redis this long (no 250 ms toll per request). */
const BYPASS_AFTER_FAILURE_MS = 1_000;
/**
 * The catalog store moves to a new connection at most this often on a READONLY reply
 * (leaveDemotedPrimary): while the address still leads to the demoted primary (a DNS name not
 * switched yet), each refused page write would otherwise open one more.
 */
const STORE_RECONNECT_EVERY_MS = 1_000;
/** How often commands Redis refuses are logged (each one logged: a line per page write). */
const REFUSED_WARN_EVERY_MS = 10_000;
/**
 * The catalog store's client is sent a PING this often while connected: the heartbeat by which a
 * connection that stopped answering is told from one that is idle (leaveSilentConnection).
 */
const STORE_PING_EVERY_MS = 1_000;
/**
 * The store failing this long — commands refused, its connection down or silent, and no answer
 * in between — is logged at warn, once; its first answer after that at info (storeHealth).
 */
const STORE_FAILING_WARN_MS = 3_000;
/** Waits between a write's version-bump tries before it answers (~1.1 s in all). */
const BUMP_RETRY_MS = [50, 100, 200, 300, 450];
/** A bump that failed before the answer is retried this often in the background … */
const BUMP_OWED_RETRY_MS = 250;
/** … for this long (Redis down longer than this has long lost or expired its pages anyway). */
const BUMP_OWED_MS = 10 * 60_000;

/**
 * Builds running at once in a process: a quarter of its pool (at least 2), so that misses —
 * which anyone can make with distinct URLs (a cursor of their own making, a `q`), each a read
 * that may score every product on sale — cannot take the connections checkouts need. With the
 * cache off every catalog read is a build: half the pool (a quarter capped uncached listings
 * at ~330/s on the development machine), the other half still checkout's. The rest wait as long
 * as they would have waited for a pool connection (DATABASE_POOL_WAIT_MS), then 503.
 */
const buildSlots = (poolSize: number, cacheOn: boolean) =>
  Math.max(2, Math.floor(poolSize / (cacheOn ? 4 : 2)));
/** Build time a client may use per window, in each process (BuildBudget). */
const BUILD_BUDGET_MS = 5_000;
const BUILD_BUDGET_WINDOW_MS = 60_000;
/**
 * A client's builds holding one of the gate's slots at once, in each process (SlotCap: one more
 * waits its turn, and others' go first) …
 */
const BUILDS_PER_CLIENT = 2;
/**
 * … and its builds begun at once, waiting for a slot or running (one more is refused 429): a
 * bound on the gate's queue it can take and on the builds it has admitted before their time is
 * known. Only those holding a slot count against BUILDS_PER_CLIENT: counting those still waiting
 * refused plain listing pages whenever the database was slow — during a 1.5 s table lock, six
 * misses from six /64s of one /48 were answered [200, 200, 200, 200, 429, 429] (review); a slow
 * database makes builds wait, it is not the client's doing.
 */
const BUILDS_BEGUN_PER_CLIENT = 8;
/**
 * …and an IPv6 client's /48, all its /64s together: four clients' time, and four builds holding a
 * slot at once (fewer than the gate's five slots at the default pool: others' builds always find
 * one), 32 begun. A /48 is free from a tunnel broker, and per /64 alone it was 65,536 budgets:
 * 1,200 searches that matched every product, each from another /64 of one /48, were all built —
 * 1.35 cores of PostgreSQL, other clients' misses from 5–8 ms to ~1 s, checkouts from 9–17 ms to
 * 190–270 ms (cost review). Now one /48 gets at most a third of a core of build time per process,
 * whoever holds it. A /48 may be a provider's households or a mobile carrier's phones (each its
 * own /64), sharing it: at a shop's catalog size their searches take milliseconds, hundreds of
 * them a minute, and cached pages and pages being built for others are never refused to them.
 */
const NETWORK_BUILD_BUDGET_MS = 4 * BUILD_BUDGET_MS;
const BUILDS_PER_NETWORK = 4;
const BUILDS_BEGUN_PER_NETWORK = 32;
/** Misses waiting for a build slot, in each of the gate's two lanes, before one more is answered 503 at once. */
const BUILDS_QUEUED = 1_000;
/**
 * Keys read from the cache lately (a page asked for again, not a one-off URL), the most recent
 * last: their rebuilds wait in the gate's priority lane, so a flood of one-off misses delays
 * the pages shoppers actually read (the home listing, a popular product) only a little. A
 * heuristic, not a wall: a client that reads its own URLs twice puts them in that lane too.
 */
const READ_AGAIN_KEYS = 1_000;
/**
 * Keys missed lately (most recent last). A page is kept (in Redis and in memory) only from its
 * second miss on in this process: a one-off URL — a cursor or `q` of a client's own making, each
 * a distinct key — is built and answered, and stored nowhere. Otherwise an anonymous flood of
 * them wrote ~40 KB pages to the Redis that BullMQ, the rate limits and the revocation marks
 * share (noeviction: filled, it refuses their writes), at the build gate's pace, and pushed the
 * pages shoppers read out of memory. A page asked for again costs one more build per process
 * (the set outlives version bumps: after one, a page missed lately is stored at its first miss).
 */
const MISSED_KEYS = 5_000;

interface MemoryEntry {
  json: string;
  expiresAt: number;
}

/**
 * The shared tier's store for CacheModule.registerAsync (@nestjs/cache-manager): Keyv over
 * @keyv/redis, keys `<REDIS_KEY_PREFIX>:catalog:version:<version>:<key>`. Its client (node-redis)
 * fails fast like the app's ioredis client: no offline queue (a command while disconnected fails
 * at once), a bounded connect, reconnection every ≤ 2 s; errors are emitted (and dropped here),
 * so a read of an unreachable Redis is a miss. A stalled Redis is bounded by
 * CACHE_REDIS_TIMEOUT_MS in CatalogCache. A connection that stops answering (leaveSilentConnection)
 * and a demoted primary's READONLY reply (leaveDemotedPrimary) move it to a new connection, as the
 * ioredis clients do; commands Redis refuses are logged, and so is a store that keeps failing
 * (storeHealth).
 */
export function createCatalogStore(config: AppConfig, metrics: MetricsService): Keyv {
  const namespace = `${config.redis.keyPrefix}:catalog:version`;
  const options: RedisClientOptions = {
    url: config.redis.url,
    name: `${config.redis.keyPrefix}:catalog-cache`,
    disableOfflineQueue: true,
    socket: { connectTimeout: 2000, reconnectStrategy: (n: number) => Math.min(n * 200, 2000) },
  };
  const adapter = new KeyvRedis(options, {
    namespace,
    keyPrefixSeparator: ':',
    throwOnConnectError: false,
    throwOnErrors: false,
  });
  keepStoreConnected(adapter, options, metrics);
  // (at shutdown: the cache manager disconnects its stores)
  adapter.disconnect = () => closeWithin(adapter.client as StoreClient);
  const store = new Keyv<SharedEntry>({ store: adapter, namespace, useKeyPrefix: false });
  // Redis expires an entry (its TTL, PX, set with it); Keyv's own check — the `expires` the
  // writer stamped on its clock, against the reader's — is left out: a reader whose clock ran
  // ahead took the others' live entries for expired and DELeted them for every process (6 s
  // ahead: every entry, at its first read — the cache worked for nobody)
  const parse = store.deserialize;
  store.deserialize = async <Value>(data: string) => {
    const parsed = parse
      ? await parse<Value>(data)
      : (JSON.parse(data) as { value?: Value } | undefined);
    return parsed === undefined ? undefined : { value: parsed.value };
  };
  store.on('error', () => undefined); // an unavailable cache is a miss; health reports Redis
  // connect now: the adapter connects on first use, and until then (no offline queue) every
  // read would be a miss
  void adapter.getClient().catch(() => undefined);
  return store;
}

/** What the store's upkeep uses of its node-redis client. */
type StoreClient = ReturnType<typeof createClient>;

/**
 * Moves the store to a new client; the old one is closed once its pending replies are in, or
 * destroyed at once with `silent` (they will never come). `move.at`: when it last moved.
 */
interface StoreMove {
  (silent?: boolean): void;
  at: number;
}

/**
 * Keeps the store's client on a connection that answers (leaveSilentConnection,
 * leaveDemotedPrimary), and says when it keeps failing (storeHealth).
 */
function keepStoreConnected(
  adapter: KeyvRedis<unknown>,
  options: RedisClientOptions,
  metrics: MetricsService,
): void {
  const logger = new Logger(CatalogCache.name);
  const health = storeHealth(logger);
  metrics.gauge(
    'catalog_store_failing',
    'The catalog cache store (Redis) failing for 3 s or more with no answer in between: 1 (catalog reads go to PostgreSQL), else 0',
    [],
    function () {
      this.set(health.failingNow() ? 1 : 0);
    },
  );
  // A new client rather than the old one reconnected: the adapter adds its listeners to a client
  // each time it connects one itself (getClient), and only once through its `client` setter.
  const move: StoreMove = Object.assign(
    (silent = false) => {
      move.at = performance.now();
      const old = adapter.client as StoreClient;
      const client = createClient(options);
      adapter.client = client; // (its listeners added here, before it can emit)
      leaveSilentConnection(adapter, client, health, move);
      // connecting at once (open from this call on: getClient uses it, failing fast until ready)
      void client.connect().catch(() => undefined);
      if (silent) {
        // (its pending commands fail: misses); one closed already throws, ignored
        void (async () => old.destroy())().catch(() => undefined);
        return;
      }
      // closed once its pending replies are in (a demoted primary still answers reads: they are
      // hits, not misses for PostgreSQL to build)
      void closeWithin(old);
    },
    { at: Number.NEGATIVE_INFINITY },
  );
  leaveSilentConnection(adapter, adapter.client as StoreClient, health, move);
  leaveDemotedPrimary(adapter, logger, move);
  adapter.on('error', (err: unknown) =>
    health.failing(performance.now(), err instanceof Error ? err.message : String(err)),
  );
}

/**
 * Closes `client` once its pending replies are in, or destroys it when they take longer than a
 * cache read may (CACHE_REDIS_TIMEOUT_MS); settles either way. node-redis's close waits for them
 * for ever: at shutdown (the cache manager's disconnect) a Redis silent then held the API's close
 * until Redis answered or the forced exit (SHUTDOWN_TIMEOUT_MS, exit code 1). One closed already
 * throws, ignored.
 */
function closeWithin(client: StoreClient): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      void (async () => client.destroy())().catch(() => undefined);
      resolve();
    }, CACHE_REDIS_TIMEOUT_MS);
    void (async () => client.close())()
      .catch(() => undefined)
      .then(() => {
        clearTimeout(timer);
        resolve();
      });
  });
}

/**
 * A connection that stops passing data without a reset (a failover behind one name whose old
 * host is gone, a NAT or conntrack entry dropped) is left for a new client once a PING of its
 * heartbeat (one every STORE_PING_EVERY_MS while it is connected) has had no answer for
 * REDIS_SOCKET_TIMEOUT_MS — the time after which the shared ioredis client drops its own. The
 * store kept it until TCP gave up (~15 min): every catalog read a build from PostgreSQL (under
 * load, the build gate's 503s), readiness 200, nothing logged above debug. (node-redis's own
 * socketTimeout is no help, with or without its pingInterval: it is the socket's idle timeout, and
 * every command written counts as activity — a read a second, as CatalogCache's bypass lets
 * through, kept the dead connection for good.) It is destroyed: its pending commands fail, misses
 * as any refused one.
 */
function leaveSilentConnection(
  adapter: KeyvRedis<unknown>,
  client: StoreClient,
  health: StoreHealth,
  move: StoreMove,
): void {
  client.on('ready', () => health.answering());
  leaveSilentHandshake(adapter, client, health, move);
  let pinging = false;
  const heartbeat = setInterval(() => {
    if (adapter.client !== client || !client.isOpen) {
      clearInterval(heartbeat); // moved from, or closed
      return;
    }
    if (!client.isReady || pinging) return;
    pinging = true;
    let answered = false;
    const silence = whenSilent(
      () => answered || adapter.client !== client || !client.isOpen,
      (since, silentMs) => {
        health.failing(since, `a PING unanswered for ${silentMs} ms`);
        move(true);
      },
    );
    client
      .ping()
      .then(
        () => {
          answered = true;
          health.answering();
        },
        () => undefined, // failed with its connection (reconnecting), or with the client moved from
      )
      .finally(() => {
        pinging = false;
        clearTimeout(silence);
      });
  }, STORE_PING_EVERY_MS);
  heartbeat.unref();
}

/**
 * A connection whose handshake (HELLO, CLIENT SETNAME) has had no answer for
 * REDIS_SOCKET_TIMEOUT_MS is left for a new client, as a silent one is (leaveSilentConnection):
 * node-redis's connectTimeout ends at the TCP connect, and its handshake then waits for ever. A
 * store moved during a stall (a Redis paused, a path that accepts and passes nothing) sat on such
 * a connection with no command sent and nothing failing — said to be failing for as long as the
 * stall lasted only if its last PING's silence had already been — and, the connection's path gone
 * for good, never a cache again.
 */
function leaveSilentHandshake(
  adapter: KeyvRedis<unknown>,
  client: StoreClient,
  health: StoreHealth,
  move: StoreMove,
): void {
  let silence: NodeJS.Timeout | undefined;
  const stopWaiting = () => clearTimeout(silence);
  client.on('connect', () => {
    stopWaiting();
    silence = whenSilent(
      () => client.isReady || adapter.client !== client || !client.isOpen,
      (since, silentMs) => {
        health.failing(since, `a handshake unanswered for ${silentMs} ms`);
        move(true);
      },
    );
  });
  client.on('ready', stopWaiting);
  client.on('error', stopWaiting);
  client.on('end', stopWaiting);
}

/**
 * Calls `silent` once REDIS_SOCKET_TIMEOUT_MS have passed from now with `over()` still false,
 * judged after that turn's I/O (a timer runs before the replies that came meanwhile are read — an
 * event loop held up past it must not take the connection for silent); cleared by clearTimeout.
 * The silence it reports began at least REDIS_SOCKET_TIMEOUT_MS ago: a timer counts from the event
 * loop's time, up to a turn before performance.now() when it was set, and a silence it called 3 s
 * measured 2,999 ms — short of STORE_FAILING_WARN_MS, the store was never said to be failing.
 */
function whenSilent(
  over: () => boolean,
  silent: (since: number, silentMs: number) => void,
): NodeJS.Timeout {
  const startedAt = performance.now();
  const timer = setTimeout(
    () =>
      setImmediate(() => {
        if (over()) return;
        const now = performance.now();
        const since = Math.min(startedAt, now - REDIS_SOCKET_TIMEOUT_MS);
        silent(since, Math.round(now - since));
      }),
    REDIS_SOCKET_TIMEOUT_MS,
  );
  timer.unref();
  return timer;
}

/**
 * After a failover the old primary may keep its clients' connections and answer every write
 * READONLY (it is a replica now; the URL's name leads to the new primary). node-redis, like
 * ioredis, reconnects only when a connection drops, and has no reconnectOnError: the store stayed
 * on the replica for good — every page refused (its reads still answering, misses), PostgreSQL
 * building every read, and nothing said (the errors are dropped; readiness asks the shared client,
 * which had moved on). On a READONLY reply (isReadOnlyReply, the one the ioredis clients reconnect
 * on: reconnectOnReadOnly) the adapter is given a new client of the same options, connected afresh
 * — through the URL's name again — and the old one is closed (`move`). At most once per
 * STORE_RECONNECT_EVERY_MS; the replies of the old connection that arrive after the move
 * (pipelined writes refused together) move nothing again.
 *
 * Commands Redis refuses (REDIS_OUTAGE_REPLY: a page write READONLY, OOM under noeviction,
 * MISCONF; any command LOADING …) are logged, at most once per REFUSED_WARN_EVERY_MS: the cache is
 * then no cache, and this is where it shows.
 */
function leaveDemotedPrimary(adapter: KeyvRedis<unknown>, logger: Logger, move: StoreMove): void {
  let warnedAt = Number.NEGATIVE_INFINITY;
  adapter.on('error', (err: unknown) => {
    if (!(err instanceof Error) || !REDIS_OUTAGE_REPLY.test(err.message)) return;
    const now = performance.now();
    const moving = isReadOnlyReply(err) && now - move.at >= STORE_RECONNECT_EVERY_MS;
    if (now - warnedAt >= REFUSED_WARN_EVERY_MS) {
      warnedAt = now;
      logger.warn(
        `catalog pages not stored: Redis refused a command (${err.message})${moving ? ', reconnecting' : ''}`,
      );
    }
    if (moving) move();
  });
}

/** The store's failures and answers, told to storeHealth. */
interface StoreHealth {
  /** Something failed (an error, a silence) from `since` on (performance.now()). */
  failing(since: number, what: string): void;
  /** Redis answered the store (a connection ready, a PING answered). */
  answering(): void;
  /** Failing for STORE_FAILING_WARN_MS with no answer since (warned, not yet answering again). */
  failingNow(): boolean;
}

/**
 * A store that keeps failing — STORE_FAILING_WARN_MS of errors and silence with no answer in
 * between — is logged at warn once, and its first answer after that at info (and shown by
 * `catalog_store_failing`, 1 in between: a dashboard's view of it): its errors are
 * dropped (a read that fails is a miss), CatalogCache logs each bypass at debug only, and
 * readiness asks the shared client, not this one; a store gone had every catalog read built from
 * PostgreSQL with nothing said. A blink (a reset, a reconnect within a second or two) says nothing.
 */
function storeHealth(logger: Logger): StoreHealth {
  let failingSince: number | undefined;
  let warned = false;
  return {
    failing(since, what) {
      failingSince ??= since;
      const forMs = performance.now() - failingSince;
      if (warned || forMs < STORE_FAILING_WARN_MS) return;
      warned = true;
      logger.warn(
        `catalog store failing for ${(forMs / 1000).toFixed(1)} s (${what}): catalog reads go to PostgreSQL`,
      );
    },
    answering() {
      if (warned) {
        const forMs = performance.now() - (failingSince ?? 0);
        logger.log(`catalog store answering again after ${(forMs / 1000).toFixed(1)} s`);
      }
      failingSince = undefined;
      warned = false;
    },
    failingNow: () => warned,
  };
}

/**
 * The version bump: INCR — of a counter started from the clock (ARGV[1], epoch ms) when there is
 * none, as a reader starts one (startVersion), never from 0: a counter deleted or lost comes
 * back to no number an earlier one may have had pages under.
 */
const BUMP = `if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('SET', KEYS[1], ARGV[1]) end
return redis.call('INCR', KEYS[1])`;

/**
 * Cache-aside for catalog reads: JSON in Redis through cache-manager (shared by every API
 * process), with a copy in process memory, both keyed by the catalog version.
 *
 * - Invalidation: every write that changes what readers see bumps the version (Redis INCR)
 *   after its commit. Every read checks the current version in Redis — one GET shared by all
 *   requests arriving in the same event-loop turn (CoalescedVersionReader) — so no reader, in
 *   any process, gets the old data once the write has returned. Memory copies of older
 *   versions are dropped as soon as a new version is seen.
 * - Stampedes: one rebuild per key and version at a time in this process (single flight), and
 *   TTL jitter so keys written together do not expire together. With the version unknown only
 *   requests of one event-loop turn share a build, begun after the last of them arrived: one
 *   that began before another process's write returned is never joined after it.
 * - Availability may be up to CATALOG_TTL_MS (+20%) stale in a cached page (a memory copy expires
 *   with its Redis entry, or at most COPY_OF_SHARED_MS after it where this host's clock runs behind
 *   the writer's); orders always check stock under row locks, so it can never oversell.
 * - Misses: at most a quarter of the pool's connections build at once (half with the cache off:
 *   buildSlots), the rest wait up to DATABASE_POOL_WAIT_MS (beyond BUILDS_QUEUED waiting in a
 *   lane: at once), then 503 with
 *   Retry-After — a flood of distinct URLs slows the catalog's misses, not checkout; pages read
 *   from the cache lately rebuild ahead of one-off URLs (READ_AGAIN_KEYS).
 * - Redis down or stalled: reads go straight to PostgreSQL (the client fails fast, and every
 *   Redis call here gives up after CACHE_REDIS_TIMEOUT_MS; after a failure reads skip Redis for
 *   a second), never a 500 and never a wait on Redis; the cache works again as soon as Redis
 *   answers.
 */
/**
 * A digest of the form pages are stored in (ENTRY_FORM) and of the configuration a page is built
 * under besides its URL: the shop's currency (only
 * products priced in it are listed), the images' public base URL (in every item) and the keys
 * its cursors are sealed and opened under (cursorKeyFingerprint: digests, never a key). Two API
 * processes configured otherwise (a rolling change of either) served each other's pages — a
 * listing of another currency's products, each then a 404 on its own page — for as long as both
 * ran; and through a key rotation's roll, a page another process cached carried a next cursor
 * sealed under its key, which this process may not open (its client's next page a 400), or answered
 * a cursor this process refuses (one of a key removed after a leak).
 */
function pageShapeOf(config: Pick<AppConfig, 'currency' | 'storage' | 'jwt'>): string {
  return createHash('sha256')
    .update(
      JSON.stringify([
        ENTRY_FORM,
        config.currency,
        config.storage.baseUrl,
        cursorKeyFingerprint(config),
      ]),
    )
    .digest('base64url')
    .slice(0, 8);
}

@Injectable()
export class CatalogCache {
  private readonly logger = new Logger(CatalogCache.name);
  private readonly inflight = new Map<string, Promise<string>>();
  /** Redis reads of a page under way: the requests that find its memory copy gone share one. */
  private readonly sharedReads = new Map<string, Promise<SharedEntry | null | undefined>>();
  /** With the version unknown: builds not yet begun, by key (buildThisTurn). */
  private readonly turnBuilds = new Map<string, Promise<string>>();
  private readonly memory = new Map<string, MemoryEntry>();
  /** Sum of the memory copies' JSON and key lengths (bounded by MEMORY_CHARS). */
  private memoryChars = 0;
  private memoryVersion: string | undefined;
  private readonly versionKey: string;
  /**
   * What else than the URL shapes a page (pageShapeOf): processes configured otherwise — during a
   * rolling change of SHOP_CURRENCY, STORAGE_BASE_URL or the JWT key — share no pages.
   */
  private readonly pageShape: string;
  private readonly enabled: boolean;
  private readonly versions: CoalescedVersionReader;
  /** Reads skip Redis until then (it just failed or stalled). */
  private bypassUntil = 0;
  /** A version bump retried in the background (bumpLater). */
  private bumpOwed?: Promise<void>;
  /** Every build (a miss's reads of PostgreSQL; every read with the cache off) runs through it (buildSlots). */
  private readonly builds: ConcurrencyGate;
  /** What each client's builds may cost (BuildBudget); none with rate limiting off. */
  private readonly budget: BuildBudget | undefined;
  /** … and each IPv6 /48's, all its clients together. */
  private readonly networkBudget: BuildBudget | undefined;
  /** READ_AGAIN_KEYS: hits, the most recent last. */
  private readonly readAgain = new Set<string>();
  /** MISSED_KEYS: misses, the most recent last. */
  private readonly missed = new Set<string>();
  /** `catalog_reads_total` by where each read was answered from (bound once: one add a read). */
  private readonly answered: Record<'memory' | 'store' | 'build', { inc(): void }>;

  constructor(
    /**
     * The version counter only: it is an INCR (atomic across processes), which cache-manager
     * has no operation for, and its raw integer is no Keyv entry.
     */
    @Inject(REDIS) private readonly redis: Redis,
    /** The shared tier (createCatalogStore). */
    @Inject(CACHE_MANAGER) private readonly shared: Cache,
    @Inject(APP_CONFIG) config: AppConfig,
    private readonly clock: Clock,
    private readonly tx: TransactionHost,
    metrics: MetricsService,
  ) {
    const reads = metrics.counter(
      'catalog_reads_total',
      "Catalog reads by where they were answered from: this process's memory copy, the shared store (Redis), or a build from PostgreSQL (begun or joined; every read with the cache off)",
      ['answered'],
    );
    this.answered = {
      memory: reads.labels('memory'),
      store: reads.labels('store'),
      build: reads.labels('build'),
    };
    this.versionKey = `${config.redis.keyPrefix}:catalog:version`;
    this.pageShape = pageShapeOf(config);
    this.enabled = config.catalogCacheEnabled;
    // (with the cache off too: every read is then a build, and a flood of them would take
    // checkout's connections all the same)
    this.builds = new ConcurrencyGate({
      concurrency: buildSlots(config.database.poolSize, this.enabled),
      maxQueued: BUILDS_QUEUED,
      maxWaitMs: config.database.poolWaitMs,
    });
    this.budget = config.rateLimitEnabled
      ? new BuildBudget({
          budgetMs: BUILD_BUDGET_MS,
          windowMs: BUILD_BUDGET_WINDOW_MS,
          begun: BUILDS_BEGUN_PER_CLIENT,
        })
      : undefined;
    this.networkBudget = config.rateLimitEnabled
      ? new BuildBudget({
          budgetMs: NETWORK_BUILD_BUDGET_MS,
          windowMs: BUILD_BUDGET_WINDOW_MS,
          begun: BUILDS_BEGUN_PER_NETWORK,
          who: 'network',
        })
      : undefined;
    this.versions = new CoalescedVersionReader(async () => {
      if (this.bypassed()) return undefined;
      try {
        const current = await withTimeout(this.redis.get(this.versionKey), CACHE_REDIS_TIMEOUT_MS);
        return current ?? (await this.startVersion());
      } catch (err) {
        this.failed(err);
        return undefined;
      }
    });
  }

  /**
   * No version counter (a first start, a Redis that lost its data, or one deleted by a bump
   * Redis refused): one is started from the clock — never a number an earlier counter may have
   * had pages under (starting from 0 again would serve those). A Redis refusing writes refuses
   * this too: readers then go to PostgreSQL, and store nothing.
   */
  private async startVersion(): Promise<string | undefined> {
    const fresh = String(this.clock.now().getTime());
    const set = await withTimeout(
      this.redis.set(this.versionKey, fresh, 'NX'),
      CACHE_REDIS_TIMEOUT_MS,
    );
    if (set === 'OK') return fresh;
    return (
      (await withTimeout(this.redis.get(this.versionKey), CACHE_REDIS_TIMEOUT_MS)) ?? undefined
    );
  }

  /** The cached JSON for `key` if present, else null. */
  async peek(key: string): Promise<string | null> {
    if (!this.enabled) return null;
    const version = await this.versions.current();
    if (version === undefined) return null;
    return this.lookup(version, key);
  }

  /**
   * A public catalog read that is not cached (a product's reviews, what was bought with it, a
   * customer's recommendations) through the same gate as the misses: anyone can make them with
   * URLs of their own, and unbounded they took the pool's connections from checkout as the
   * misses did before the gate (buildSlots; 503 with Retry-After past the wait).
   */
  readBounded<T>(read: () => Promise<T>, client?: Payer): Promise<T> {
    return this.charged(read, client, this.admit(client), false);
  }

  /**
   * `read` through the gate, its time paid by `spent` (admit: `client`'s budget and its /48's),
   * holding no more of the gate's slots than `client`'s caps let it (slotCaps).
   */
  private charged<T>(
    read: () => Promise<T>,
    client: Payer | undefined,
    spent: Spend | undefined,
    priority: boolean,
  ): Promise<T> {
    return this.builds
      .run(
        async () => {
          const started = performance.now();
          try {
            return await read();
          } finally {
            spent?.(performance.now() - started);
          }
        },
        { priority, caps: this.slotCaps(client) },
      )
      .finally(() => spent?.(0)); // refused by the gate (503): nothing read, nothing spent
  }

  /**
   * The cached JSON for `key`, or `build()`'s result (serialized and stored). `client` (its per-IP
   * tracker, and its IPv6 /48), where given, pays for a build it begins with its BuildBudget —
   * never for one it joins, and never anyone else's read refused for it.
   */
  async getOrBuild(
    key: string,
    unbounded: () => Promise<unknown>,
    client?: Payer,
  ): Promise<string> {
    // A build this request begins (not one it joins) is admitted first, by the client's budget:
    // a refusal is this request's own answer, never a shared build's
    const build = (spent = this.admit(client)) =>
      this.charged(unbounded, client, spent, this.readAgain.has(key));
    if (!this.enabled) {
      this.answered.build.inc();
      return JSON.stringify(await build());
    }
    const version = await this.versions.current();
    if (version !== undefined) {
      const found = await this.lookup(version, key);
      if (found !== null) return found;
    }
    this.answered.build.inc();
    // Without the version (Redis failed or stalled a moment ago), a build already running may
    // have begun before a write that another process has since committed and answered: this
    // request, which came after that answer, must not join it — only one not yet begun.
    if (version === undefined) return this.buildThisTurn(key, build, () => this.admit(client));
    const sharedKey = this.sharedKey(version, key);
    const running = this.inflight.get(sharedKey);
    if (running) return running;
    const spent = this.admit(client);
    const keep = this.missedBefore(key);
    // A build its own client's cap holds back (that client's other builds hold its slots) is not
    // joined: another client's request for the page would wait on that client's builds — up to
    // the pool's wait, then 503, with slots free (review) — and builds its own instead. (Asked
    // before the build begins: begun, it holds its slot and fills the cap itself.)
    const joinable = !this.builds.overCaps(this.slotCaps(client));
    const rebuild = (async () => {
      const json = JSON.stringify(await build(spent));
      if (!keep) return json; // a first miss: answered, stored nowhere (MISSED_KEYS)
      const ttl = CATALOG_TTL_MS + Math.floor(Math.random() * (MAX_ENTRY_TTL_MS - CATALOG_TTL_MS));
      const entry: SharedEntry = { json, expiresAt: this.clock.now().getTime() + ttl };
      const stored = await this.safe(() => this.shared.set(sharedKey, entry, ttl));
      if (stored) this.remember(version, key, json, ttl);
      return json;
    })().finally(() => {
      if (this.inflight.get(sharedKey) === rebuild) this.inflight.delete(sharedKey);
    });
    if (joinable) this.inflight.set(sharedKey, rebuild);
    return rebuild;
  }

  /** The slots `client`'s builds, and its /48's, may hold at once (none without rate limiting). */
  private slotCaps(client: Payer | undefined): SlotCap[] {
    if (client === undefined || !this.budget) return [];
    const caps = [{ holder: client.client, limit: BUILDS_PER_CLIENT }];
    if (client.network !== undefined)
      caps.push({ holder: client.network, limit: BUILDS_PER_NETWORK });
    return caps;
  }

  /**
   * A build `client` begins, admitted by its budget and its /48's (429 over either); none to pay
   * without a client. The /48 first: a /64 its network refuses opens no window of its own, so one
   * host's /64s cannot fill the clients' table. The /48 pays only for builds its client's own
   * budget let begin: one /64 spends at most its own share of its neighbours' budget.
   */
  private admit(client: Payer | undefined): Spend | undefined {
    if (client === undefined || !this.budget) return undefined;
    const network =
      client.network === undefined ? undefined : this.networkBudget?.admit(client.network);
    let own: Spend;
    try {
      own = this.budget.admit(client.client);
    } catch (err) {
      network?.(0); // begun by neither: its place back, nothing spent
      throw err;
    }
    if (!network) return own;
    return (elapsedMs) => {
      own(elapsedMs);
      network(elapsedMs);
    };
  }

  /**
   * One build for the requests of `key` arriving in this event-loop turn, begun once the turn is
   * over: every request it answers arrived before it began (so it reads what any of them could
   * expect), and one arriving later begins its own. A Redis outage at peak still sends one
   * query per URL per turn to PostgreSQL, not one per request.
   */
  private buildThisTurn(
    key: string,
    build: (spent: Spend | undefined) => Promise<unknown>,
    admit: () => Spend | undefined,
  ): Promise<string> {
    const waiting = this.turnBuilds.get(key);
    if (waiting) return waiting;
    const spent = admit();
    const built = new Promise<void>((resolve) => setImmediate(resolve))
      .then(() => {
        this.turnBuilds.delete(key); // begun: later requests wait for no build begun before them
        return build(spent);
      })
      .then((value) => JSON.stringify(value));
    this.turnBuilds.set(key, built);
    return built;
  }

  /**
   * Call after a write that changes what catalog readers see: the version is bumped once the
   * current transaction has committed (TransactionHost.whenCommitted — a handler inside the
   * idempotency interceptor's transaction used to bump it before the COMMIT, and a reader in
   * between cached the old rows under the new version), before the request answers. Retried for
   * about a second (past the Redis client's reconnect), then in the background until Redis
   * takes it: while Redis is unreachable readers go to PostgreSQL anyway (their version read
   * fails too), and once it is back the old pages stop at the next try.
   */
  invalidate(): Promise<void> {
    return this.tx.whenCommitted(() => this.bumpVersion());
  }

  private async bumpVersion(): Promise<void> {
    this.forgetAll();
    // longer than the Redis client's first reconnect (200 ms): a connection reset during the
    // write must not cost the bump
    for (const wait of BUMP_RETRY_MS) {
      if (await this.tryBump()) return;
      await new Promise((r) => setTimeout(r, wait));
    }
    if (await this.tryBump()) return;
    this.logger.error('catalog version not bumped yet: retrying until Redis takes it');
    this.bumpLater();
  }

  private async tryBump(): Promise<boolean> {
    try {
      await withTimeout(
        this.redis.eval(BUMP, 1, this.versionKey, String(this.clock.now().getTime())),
        CACHE_REDIS_TIMEOUT_MS,
      );
      return true;
    } catch (err) {
      this.failed(err);
      // Redis answered, refusing the write (out of memory under noeviction, which BullMQ needs):
      // its reads still serve the old version's pages. DEL is taken even then: readers find no
      // counter and start one from the clock (startVersion) — or, while writes are refused, go to
      // PostgreSQL and store nothing.
      if (!(err instanceof Error && err.name === 'ReplyError')) return false;
      return (await this.safe(() => this.redis.del(this.versionKey))) !== undefined;
    }
  }

  /**
   * One bump owed, retried in the background until Redis takes it (for up to BUMP_OWED_MS):
   * while Redis is unreachable readers go to PostgreSQL anyway; once it answers again, its pages
   * under the old version stop being served at the next try, not after their TTL.
   */
  private bumpLater(): void {
    if (this.bumpOwed) return;
    const until = this.clock.now().getTime() + BUMP_OWED_MS;
    this.bumpOwed = (async () => {
      while (this.clock.now().getTime() < until) {
        await new Promise((r) => setTimeout(r, BUMP_OWED_RETRY_MS).unref());
        if (await this.tryBump()) {
          this.logger.warn('catalog version bumped after Redis came back');
          return;
        }
      }
      this.logger.error(
        `catalog version never bumped: cached pages may be stale for up to ${CATALOG_TTL_MS} ms`,
      );
    })().finally(() => {
      this.bumpOwed = undefined;
    });
  }

  /** Memory first, then Redis (remembering what it finds for as long as Redis keeps it). */
  private async lookup(version: string, key: string): Promise<string | null> {
    if (version !== this.memoryVersion) {
      this.forgetAll();
      this.memoryVersion = version;
    }
    const now = this.clock.now().getTime();
    const local = this.memory.get(key);
    if (local && local.expiresAt > performance.now()) {
      this.answered.memory.inc();
      this.readAgainNow(key);
      return local.json;
    }
    // one read per page at a time: when a hot page's copy lapses (every second at most), the
    // requests arriving during the round trip wait for it instead of each asking and parsing
    const sharedKey = this.sharedKey(version, key);
    let reading = this.sharedReads.get(sharedKey);
    if (!reading) {
      reading = this.safe(() => this.shared.get<SharedEntry>(sharedKey)).finally(() =>
        this.sharedReads.delete(sharedKey),
      );
      this.sharedReads.set(sharedKey, reading);
    }
    const found = await reading;
    if (!isSharedEntry(found)) return null;
    this.answered.store.inc();
    this.readAgainNow(key);
    // never longer than the entry by more than COPY_OF_SHARED_MS: `expiresAt` is on the writer's
    // clock, which may run seconds or minutes ahead of this host's — or behind it: Redis just
    // answered the entry, so it is live, and is copied for COPY_OF_SHARED_MS
    const left = found.expiresAt - now;
    this.remember(
      version,
      key,
      found.json,
      left > 0 ? Math.min(left, COPY_OF_SHARED_MS) : COPY_OF_SHARED_MS,
    );
    return found.json;
  }

  /** A hit: `key` moves to the recent end of READ_AGAIN_KEYS (the oldest leaves past the bound). */
  private readAgainNow(key: string): void {
    recentLast(this.readAgain, key, READ_AGAIN_KEYS);
  }

  /** A miss: whether `key` was asked for before (a hit, or a miss lately); it is noted as missed. */
  private missedBefore(key: string): boolean {
    const before = this.readAgain.has(key) || this.missed.has(key);
    recentLast(this.missed, key, MISSED_KEYS);
    return before;
  }

  private remember(version: string, key: string, json: string, ttlMs: number): void {
    if (version !== this.memoryVersion || ttlMs <= 0) return;
    this.forget(key);
    if (json.length > MEMORY_MAX_ENTRY_CHARS) return;
    // on this process's monotonic clock: a wall clock stepped back must not keep a copy longer
    this.memory.set(key, { json, expiresAt: performance.now() + ttlMs });
    this.memoryChars += key.length + json.length;
    // oldest first (Map keeps insertion order)
    while (this.memory.size > MEMORY_ENTRIES || this.memoryChars > MEMORY_CHARS) {
      this.forget(this.memory.keys().next().value!);
    }
  }

  private forget(key: string): void {
    const entry = this.memory.get(key);
    if (!entry) return;
    this.memory.delete(key);
    this.memoryChars -= key.length + entry.json.length;
  }

  private forgetAll(): void {
    this.memory.clear();
    this.memoryChars = 0;
  }

  /** Within the store's namespace (`<prefix>:catalog:version`). */
  private sharedKey(version: string, key: string): string {
    return `${version}:${this.pageShape}:${key}`;
  }

  private async safe<T>(op: () => Promise<T>): Promise<T | undefined> {
    try {
      return await withTimeout(op(), CACHE_REDIS_TIMEOUT_MS);
    } catch (err) {
      this.failed(err);
      return undefined;
    }
  }

  private bypassed(): boolean {
    return performance.now() < this.bypassUntil;
  }

  private failed(err: unknown): void {
    this.logger.debug(`catalog cache bypassed for ${BYPASS_AFTER_FAILURE_MS} ms: ${String(err)}`);
    this.bypassUntil = performance.now() + BYPASS_AFTER_FAILURE_MS;
  }
}

/** Moves `key` to the recent end of `keys`; the oldest leaves past `bound`. */
function recentLast(keys: Set<string>, key: string, bound: number): void {
  keys.delete(key);
  keys.add(key);
  if (keys.size > bound) keys.delete(keys.values().next().value!);
}
