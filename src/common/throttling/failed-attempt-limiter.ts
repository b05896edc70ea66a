import { Inject, Injectable, Logger } from '@nestjs/common';
import type Redis from 'ioredis';
import { APP_CONFIG, AppConfig } from '../../config/config';
import { REDIS } from '../../redis/redis.module';
import { ConnectionEvents, whenConnected } from '../../redis/when-connected';
import { DomainError } from '../errors/domain-error';
import { withTimeout } from '../with-timeout';
import {
  FailureBucket,
  SignInChannel,
  knownClientField,
  knownClientKey,
  knownClientsKey,
  knownDeviceField,
  knownDevicesKey,
  legacyKnownDeviceKey,
  policyHeaderItem,
  signInBuckets,
  stateHeaderItem,
} from './rate-limit.policies';
import { storeDown } from './rate-limit.guard';
import { askStore } from './redis-throttler.storage';

/** Per bucket, after the keys: kind (1 = progressive), limit, windowMs, baseMs, capMs. */
const FIELDS = 5;

/**
 * How long an attempt counts as in flight at most (reserved, its verification not yet settled):
 * far above any verification (the password hasher's queue gives up within seconds); a process
 * killed mid-attempt leaves its count to this expiry.
 */
const IN_FLIGHT_MS = 60_000;

/**
 * When the attempts that fill a bucket are still being verified, not failed: the caller is asked
 * to retry in a second — their outcome decides (a success gives its attempt back), not the
 * window or a lock.
 */
const IN_FLIGHT_RETRY_MS = 1_000;

/**
 * Refuses (answers the milliseconds to wait) when any bucket is exhausted; otherwise counts one
 * failure in every bucket and answers 0. All-or-nothing and atomic, so a burst of concurrent
 * attempts cannot get past a limit: exactly `limit` of them are reserved. Redis's clock, so every
 * process agrees. Window buckets are plain counters with the window as TTL; progressive ones a
 * hash {f: failures, p: of them still in flight (pt: since when, ms), u: locked until (ms)}
 * forgotten windowMs after the last failure. Attempts still in flight are counted (so
 * concurrent guesses cannot all be verified before the first failure is known) but told apart:
 * a bucket full of attempts not yet settled refuses for IN_FLIGHT_RETRY_MS, not for its window or
 * a lock — concurrent sign-ins with the right password were told to wait a window (15 min on the
 * queue board) for failures that never happened — and a progressive lock is set only for
 * failures known (or, at a reservation, for the failures already known reaching the limit).
 * Attempts in flight longer than IN_FLIGHT_MS (their settle lost) count as failures, no longer
 * in flight. A window bucket's in-flight count is its sibling key `<key>:p` (KEYS[n + i]; a
 * progressive bucket's sibling goes unused: its count is the hash's `p`).
 */
const RESERVE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = #KEYS / 2
local wait = 0
local refusing = 0
for i = 1, n do
  local key = KEYS[i]
  local o = (i - 1) * ${FIELDS}
  local limit = tonumber(ARGV[o + 2])
  local w = 0
  if ARGV[o + 1] == '1' then
    local lockedUntil = tonumber(redis.call('HGET', key, 'u') or '0')
    local failures = tonumber(redis.call('HGET', key, 'f') or '0')
    local inFlight = tonumber(redis.call('HGET', key, 'p') or '0')
    if inFlight > 0 and now - tonumber(redis.call('HGET', key, 'pt') or '0') > ${IN_FLIGHT_MS} then
      -- attempts in flight longer than any verification: their settle was lost (a process killed,
      -- a connection dropped) — counted as the failures they may have been, no longer in flight
      redis.call('HSET', key, 'p', 0)
      inFlight = 0
    end
    if lockedUntil > now then w = lockedUntil - now
    elseif inFlight > 0 and failures >= limit then w = ${IN_FLIGHT_RETRY_MS} end
  else
    local failures = tonumber(redis.call('GET', key) or '0')
    if failures >= limit then
      local inFlight = tonumber(redis.call('GET', KEYS[n + i]) or '0')
      local ttl = redis.call('PTTL', key)
      if ttl < 0 then
        ttl = tonumber(ARGV[o + 3])
        redis.call('PEXPIRE', key, ttl)
      end
      if failures - inFlight < limit then w = math.min(ttl, ${IN_FLIGHT_RETRY_MS}) else w = ttl end
    end
  end
  if w > wait then wait = w; refusing = i end
end
if wait > 0 then return { wait, refusing } end
for i = 1, n do
  local key = KEYS[i]
  local o = (i - 1) * ${FIELDS}
  local limit = tonumber(ARGV[o + 2])
  local window = tonumber(ARGV[o + 3])
  if ARGV[o + 1] == '1' then
    local failures = redis.call('HINCRBY', key, 'f', 1)
    local inFlight = redis.call('HINCRBY', key, 'p', 1)
    redis.call('HSET', key, 'pt', now)
    local delay = 0
    if failures - inFlight >= limit then
      delay = math.floor(math.min(tonumber(ARGV[o + 5]),
        tonumber(ARGV[o + 4]) * 2 ^ math.min(failures - limit, 40)))
      redis.call('HSET', key, 'u', now + delay)
    end
    redis.call('PEXPIRE', key, math.max(window, delay))
  else
    local failures = redis.call('INCR', key)
    if failures == 1 or redis.call('PTTL', key) < 0 then redis.call('PEXPIRE', key, window) end
    redis.call('INCR', KEYS[n + i])
    redis.call('PEXPIRE', KEYS[n + i], ${IN_FLIGHT_MS})
  end
end
return { 0, 0 }
`;

/**
 * Settles a reservation (a bucket given back to nothing is deleted: attempts refused unverified —
 * the password hasher's queue full — with a new email each left a key per email for its window,
 * which no per-IP ceiling bounded, as it was given back too); in every mode the attempt is no
 * longer in flight. ARGV[1]:
 * - 'success' (the password was right): a progressive bucket, which belongs to one client and
 *   account, is cleared; a window bucket gets its one failure back;
 * - 'unused' (nothing was verified, e.g. the server was too busy): every bucket gets its one
 *   failure back; a progressive lock stays if the count still reaches the limit;
 * - 'failure': the failure stays counted, and a progressive lock (re)starts now once the known
 *   failures reach the limit (so the wait is not eaten up by a slow verification).
 */
const SETTLE = `
local mode = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = #KEYS / 2
for i = 1, n do
  local key = KEYS[i]
  local o = 1 + (i - 1) * ${FIELDS}
  local limit = tonumber(ARGV[o + 2])
  if ARGV[o + 1] == '1' then
    local failures = tonumber(redis.call('HGET', key, 'f') or '0')
    if mode == 'success' then
      redis.call('DEL', key)
    else
      if tonumber(redis.call('HGET', key, 'p') or '0') > 0 then redis.call('HINCRBY', key, 'p', -1) end
      if mode == 'failure' then
        if failures >= limit then
          local delay = math.floor(math.min(tonumber(ARGV[o + 5]),
            tonumber(ARGV[o + 4]) * 2 ^ math.min(failures - limit, 40)))
          local lockedUntil = tonumber(redis.call('HGET', key, 'u') or '0')
          if now + delay > lockedUntil then redis.call('HSET', key, 'u', now + delay) end
          redis.call('PEXPIRE', key, math.max(tonumber(ARGV[o + 3]), delay))
        end
      elseif failures > 0 then
        local left = redis.call('HINCRBY', key, 'f', -1)
        if left <= 0 then redis.call('DEL', key)
        elseif left < limit then redis.call('HDEL', key, 'u') end
      end
    end
  else
    if mode ~= 'failure' and tonumber(redis.call('GET', key) or '0') > 0 then
      if redis.call('DECR', key) <= 0 then redis.call('DEL', key) end
    end
    if tonumber(redis.call('GET', KEYS[n + i]) or '0') > 0 then
      if redis.call('DECR', KEYS[n + i]) <= 0 then redis.call('DEL', KEYS[n + i]) end
    end
  end
end
return 0
`;

export type Outcome = 'success' | 'unused' | 'failure';

export interface SignInOptions {
  /** The signed-in session a password change comes from (its own failure ceiling). */
  session?: string;
  /**
   * Login and the queue board: the account's password epoch now (users.password_epoch; null: no
   * such account). An address is the owner's only under the password it signed in with: its mark
   * holds the epoch, so a new password (a change, a reset by admin:create) makes every earlier
   * address mark count for nothing — an address is shared (one NAT, a carrier's), and one a thief
   * signed in from with a stolen password is no longer spared the account's ceiling once the owner
   * has changed it — while a rehash of the same password (argon2 parameters raised) keeps them
   * all. A device keeps some standing across a new password (deviceStanding).
   */
  passwordEpoch?: string | null;
  /**
   * Login: whether the account's records say the client is one of the owner's (a session was
   * opened from it since the password was last set), asked only when Redis holds no mark for it
   * under the current password.
   */
  ownClientOnRecord?: () => Promise<boolean>;
  /**
   * Login: the device the sign-in presented a token of (SessionIssuer#deviceOf): its failures
   * are counted as that device's, not its address's, and it is one of the owner's clients while
   * it holds a mark under the current password (a sign-in from it in the last 90 days), or its
   * address is one; marked under an earlier password only, it is spared the account's ceiling
   * alone (deviceStanding, signInBuckets).
   */
  device?: string | null;
}

/** The detail of a sign-in refused because the limits' store could not count it (Redis slow or down). */
export const SIGN_IN_STORE_DOWN = 'Temporarily unable to accept this request; retry shortly.';

/** The tag an unknown account is asked under: no epoch is ever this (22 base64url characters). */
const NO_EPOCH = '-';

/** How long a client stays one of the account's own after its last sign-in there. */
const KNOWN_CLIENT_MS = 90 * 24 * 3600 * 1000;
const IS_KNOWN = `if redis.call('GET', KEYS[1]) == ARGV[1] then return 1 end return 0`;
/**
 * The devices an account keeps as its own clients. One key per device, minted at every sign-in
 * without a device token, kept 90 days: 20 sign-ins a minute from one address left ~29,000 keys
 * a day there, ~600 MB of Redis over the 90 days — and Redis runs BullMQ, the limits and the
 * revocation marks. Now one hash per account, the devices that signed in last kept.
 */
export const KNOWN_DEVICES_PER_ACCOUNT = 20;
/** The addresses an account keeps as its own clients, likewise (the latest sign-ins'). */
export const KNOWN_CLIENTS_PER_ACCOUNT = 50;
/**
 * A mark in one of an account's hashes (its devices, its addresses). Field value: `<credential>
 * <expiry ms>`, on Redis's clock (TIME). A live mark made under the current password: 2; under an
 * earlier one: 1 (deviceStanding); none or expired: 0.
 */
const MARK_STANDING = `
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return 0 end
local sep = string.find(v, ' ', 1, true)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if tonumber(string.sub(v, sep + 1)) <= now then return 0 end
if string.sub(v, 1, sep - 1) == ARGV[2] then return 2 end
return 1`;
const FORGET = `redis.call('DEL', KEYS[1]) return 1`;
const REMEMBER_MARK = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ' ' .. (now + ttl))
local cap = tonumber(ARGV[4])
if redis.call('HLEN', KEYS[1]) > cap then
  local all = redis.call('HGETALL', KEYS[1])
  local entries = {}
  for i = 1, #all, 2 do
    local v = all[i + 1]
    local expiry = tonumber(string.sub(v, string.find(v, ' ', 1, true) + 1))
    entries[#entries + 1] = { all[i], expiry }
  end
  table.sort(entries, function(a, b) return a[2] < b[2] end)
  for i = 1, #entries - cap do redis.call('HDEL', KEYS[1], entries[i][1]) end
end
redis.call('PEXPIRE', KEYS[1], ttl)
return 1`;

/**
 * Counts failed password sign-ins in Redis, shared by every process: the one mechanism behind
 * the login route and the queue board's HTTP Basic sign-in (buckets: rate-limit.policies.ts
 * signInBuckets). An attempt is reserved BEFORE the password is verified, so concurrent guesses
 * cannot all be verified before the first failure is counted; a success gives it back.
 *
 * The counters are plain Redis writes outside any database transaction: a failed attempt stays
 * counted although its request fails. Redis unreachable or slower than RATE_LIMIT_STORE_TIMEOUT_MS (a
 * connection being replaced is waited for that long first): 503 SERVICE_UNAVAILABLE with
 * Retry-After (fail closed, like the login route's request limits). After a question or a
 * reservation failed, the store is not asked for a second (askStore, shared with the request
 * limits): a sign-in waits once, not once per question.
 * RATE_LIMIT_ENABLED=false switches it off in development only (config.signIn.enabled): elsewhere
 * brute-force protection stays on whatever the request limits are.
 */
@Injectable()
export class FailedAttemptLimiter {
  private readonly log = new Logger('SignInLimits');
  private readonly prefix: string;
  private storeDown = false;

  constructor(
    @Inject(REDIS)
    private readonly redis: Pick<Redis, 'eval'> & ConnectionEvents,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {
    this.prefix = `${config.redis.keyPrefix}:rl:`;
  }

  /**
   * A password sign-in through `channel` for `account` from client `ip`, counted in the buckets
   * of rate-limit.policies.ts signInBuckets (see `attempt`).
   */
  async signIn<T>(
    channel: SignInChannel,
    account: string,
    ip: string,
    verify: (client: { own: boolean }) => Promise<T | null>,
    options: SignInOptions = {},
  ): Promise<T | null> {
    if (channel === 'password-change') {
      return this.attempt(
        signInBuckets(channel, account, ip, this.config.signIn, false, options.session),
        () => verify({ own: false }),
      );
    }
    // login and the queue board: a client the owner has signed in from (through either) is
    // spared the account's ceiling, so a stranger spending it cannot lock the owner out
    // an unknown account (no epoch) is asked the same questions as a known one — Redis's mark, the
    // sessions on record — under a tag no mark holds: the same work, no timing to tell them apart
    const credential = options.passwordEpoch ?? NO_EPOCH;
    const device = channel === 'login' ? (options.device ?? undefined) : undefined;
    // a connection being replaced is waited out before the questions too: asked into its gap,
    // they went unanswered and the owner's own device was judged a stranger's (the account's
    // ceiling, which strangers may have spent, then refused the owner)
    if (this.config.signIn.enabled)
      await whenConnected(this.redis, this.config.rateLimitStoreTimeoutMs);
    const standing =
      this.config.signIn.enabled && device !== undefined
        ? await this.deviceStanding(account, device, credential)
        : 'none';
    const isKnown =
      this.config.signIn.enabled &&
      (standing === 'current' ||
        (await this.isOwnClient(account, ip, credential, options.ownClientOnRecord)));
    // `own`: the verification may go first (the password hasher's priority lane); a device that
    // signed in under an earlier password only is spared the account's ceiling, nothing more
    const buckets = signInBuckets(
      channel,
      account,
      ip,
      this.config.signIn,
      isKnown ? true : standing === 'earlier' ? 'earlier-password' : false,
      undefined,
      device,
    );
    const result = await this.attempt(buckets, () => verify({ own: isKnown }));
    if (result !== null && options.passwordEpoch) this.rememberClient(account, ip, credential);
    return result;
  }

  /**
   * Redis's mark first (under the current password: an address is shared — one NAT, a carrier's —
   * and one a thief signed in from is no longer spared once the owner changes it), then a mark of
   * the build before the per-account hash (read only); without either, the durable record (a
   * session opened from the client — Redis may have lost its marks: a restart without
   * persistence, a failover, a flush). A sign-in from the address writes the hash's mark; none
   * is written here, before the password is checked. None can say: unknown, the stricter answer.
   */
  private async isOwnClient(
    account: string,
    ip: string,
    credential: string,
    onRecord?: () => Promise<boolean>,
  ): Promise<boolean> {
    const key = this.prefix + knownClientsKey(account);
    if ((await this.markStanding(key, knownClientField(account, ip), credential)) === 2)
      return true;
    // (the previous build's mark is not copied here, before the password is checked: a wrong
    // guess would have given it 90 days more; a sign-in from the address writes the hash's)
    if (await this.isKnownClient(this.prefix + knownClientKey(account, ip), credential))
      return true;
    // (nor is a mark written from the record before the password is checked: a sign-in from the
    // address writes it)
    return !!onRecord && (await onRecord().catch(() => false));
  }

  /**
   * `ip` is one of the account's own clients from now on (a registration or sign-in from it),
   * under the account's password epoch `passwordEpoch`.
   */
  rememberClient(account: string, ip: string, passwordEpoch: string): void {
    this.rememberMark(
      this.prefix + knownClientsKey(account),
      knownClientField(account, ip),
      passwordEpoch,
      KNOWN_CLIENTS_PER_ACCOUNT,
    );
  }

  /**
   * `device` (SessionIssuer#deviceOf) is one of the account's own clients from now on (a
   * registration or sign-in from it), under the account's password epoch `passwordEpoch`.
   */
  rememberDevice(account: string, device: string, passwordEpoch: string): void {
    this.rememberMark(
      this.prefix + knownDevicesKey(account),
      knownDeviceField(device),
      passwordEpoch,
      KNOWN_DEVICES_PER_ACCOUNT,
    );
  }

  /** A mark in one of the account's hashes for 90 days, the latest `cap` kept. */
  private rememberMark(key: string, field: string, credential: string, cap: number): void {
    if (!this.config.signIn.enabled) return;
    this.redis
      .eval(REMEMBER_MARK, 1, key, field, credential, KNOWN_CLIENT_MS, cap)
      .catch(() => undefined); // lost: only stricter
  }

  /** A mark's standing (MARK_STANDING: 2, 1, 0); 0 when Redis cannot say in time (the stricter answer). */
  private async markStanding(key: string, field: string, credential: string): Promise<number> {
    return askStore(this.redis, this.config.rateLimitStoreTimeoutMs, () =>
      this.redis.eval(MARK_STANDING, 1, key, field, credential),
    )
      .then(Number)
      .catch(() => 0);
  }

  /** Marked under `credential` (the current password); unknown when Redis cannot say (the stricter answer). */
  private async isKnownClient(key: string, credential: string): Promise<boolean> {
    return this.asks(() => this.redis.eval(IS_KNOWN, 1, key, credential));
  }

  /**
   * What the account knows of the device (rememberDevice): a sign-in from it in the last 90 days
   * under the current password (`current`: one of the owner's own clients, spared the ceilings,
   * its verification in the priority lane), under an earlier one only (`earlier`), or none. An
   * earlier password's device is spared the account's ceiling — nothing more (the address and
   * network ceilings, no priority lane): the owner's phone and laptop became strangers at every
   * password change, and a stranger filling the account's ceiling then locked the owner out of all
   * but the one address the change was made from (API.md: a stranger can never lock the owner
   * out); a device a thief signed in from with a stolen password keeps that too, and its guesses
   * at the new password still fill its own (account, device) pair, with its growing delay.
   * (`credential` also reads the marks of the build before the per-account hash.)
   */
  private async deviceStanding(
    account: string,
    device: string,
    credential: string,
  ): Promise<'current' | 'earlier' | 'none'> {
    const answer = await this.markStanding(
      this.prefix + knownDevicesKey(account),
      knownDeviceField(device),
      credential,
    );
    if (answer === 2) return 'current';
    if (answer === 1) return 'earlier';
    // marked by a build before the per-account hash: still the owner's, so an upgrade forgets no
    // owner's device (the old keys live out their 90 days; a sign-in from the device writes the
    // hash's — not here, before the password is checked, where a wrong guess would have given
    // the mark 90 days more)
    const legacy = this.prefix + legacyKnownDeviceKey(account, device);
    return (await this.isKnownClient(legacy, credential)) ? 'current' : 'none';
  }

  /**
   * The devices marked for `account` are forgotten (a new account registered with the email: the
   * marks of a deleted account that held it are not its owner's).
   */
  forgetDevices(account: string): void {
    if (!this.config.signIn.enabled) return;
    this.redis.eval(FORGET, 1, this.prefix + knownDevicesKey(account)).catch(() => undefined); // (a device of the old account is then spared the account's ceiling only)
  }

  /** A script's yes (1); no when Redis cannot say in time (the stricter answer). */
  private async asks(answer: () => Promise<unknown>): Promise<boolean> {
    return askStore(this.redis, this.config.rateLimitStoreTimeoutMs, answer)
      .then((n) => Number(n) === 1)
      .catch(() => false);
  }

  /**
   * Runs `verify` (a password verification) as one counted attempt: reserved first — 429
   * RATE_LIMITED with Retry-After if a bucket is exhausted or locked, and `verify` does not run
   * — then given back if it succeeds (answers non-null) or throws (nothing was verified, e.g.
   * 503 busy). A null answer stays counted as a failure (no longer in flight), and a progressive
   * lock it triggered restarts once it is known (so it lasts its full time after the answer).
   */
  async attempt<T>(
    buckets: readonly FailureBucket[],
    verify: () => Promise<T | null>,
  ): Promise<T | null> {
    if (!this.config.signIn.enabled || buckets.length === 0) return verify();
    await this.reserve(buckets);
    let result: T | null;
    try {
      result = await verify();
    } catch (err) {
      await this.settle(buckets, 'unused');
      throw err;
    }
    // a failure too: no longer in flight (and a progressive lock restarts)
    await this.settle(buckets, result !== null ? 'success' : 'failure');
    return result;
  }

  private async reserve(buckets: readonly FailureBucket[]): Promise<void> {
    let waitMs: number;
    let refusing: FailureBucket | undefined;
    // a connection being replaced (a blip) is waited for, not counted as the store down
    await whenConnected(this.redis, this.config.rateLimitStoreTimeoutMs);
    try {
      const [wait, index] = await this.sendReserve(buckets);
      waitMs = Number(wait);
      refusing = buckets[Number(index) - 1];
    } catch (err) {
      if (!this.storeDown) {
        this.log.warn(`${String(err)}: password sign-ins are refused until Redis answers`);
      }
      this.storeDown = true;
      // a dependency down, not a limit reached: 503 (as the OpenAPI document says of a sign-in),
      // so clients do not tell the person they tried too often
      throw storeDown(SIGN_IN_STORE_DOWN);
    }
    if (this.storeDown) this.log.log('sign-in limit store reachable again');
    this.storeDown = false;
    if (waitMs > 0) {
      const seconds = Math.max(1, Math.ceil(waitMs / 1000));
      // the limit that refused, in the 429's RateLimit headers (API.md) beside the request
      // limits the guards counted: nothing remaining, reset when Retry-After says
      const name = refusing?.key.split(':')[0] ?? 'failed-sign-ins';
      const headers: Record<string, string> = { 'Retry-After': String(seconds) };
      if (refusing) {
        headers['RateLimit-Policy'] = policyHeaderItem(
          name,
          refusing.limit,
          Math.ceil(Math.max(refusing.windowMs, waitMs) / 1000),
        );
        headers.RateLimit = stateHeaderItem(name, 0, seconds);
      }
      throw new DomainError('RATE_LIMITED', 'Too many failed sign-ins; retry later.', { headers });
    }
  }

  /**
   * RESERVE, answered within RATE_LIMIT_STORE_TIMEOUT_MS; not sent while the store is not asked (it failed a
   * moment ago — for this request, which has paid its wait, or another: askStore).
   */
  private async sendReserve(buckets: readonly FailureBucket[]): Promise<[number, number]> {
    let reserving: Promise<[number, number]> | undefined;
    try {
      return await askStore(
        this.redis,
        this.config.rateLimitStoreTimeoutMs,
        () =>
          (reserving = this.redis.eval(
            RESERVE,
            2 * buckets.length,
            ...this.keys(buckets),
            ...args(buckets),
          ) as Promise<[number, number]>),
      );
    } catch (err) {
      // Redis slower than the limit still runs the reservation: the attempt would stay counted
      // though this request is refused unverified — a slow minute's retries were an admin's (or
      // a shared address's) lockout for the rest of the window. Given back once it answers.
      reserving?.then(
        ([wait]) => (Number(wait) === 0 ? this.settle(buckets, 'unused') : undefined),
        () => undefined, // not run, or unknowable (a reply lost with its connection)
      );
      throw err;
    }
  }

  /**
   * Best effort: if Redis is gone now, the attempt just stays counted as reserved (safe side). A
   * connection being replaced is waited for first, as the reservation waits: sent into its gap (a
   * blink while the password was verified), the settle failed at once, and a right password stayed
   * counted as a failure, in flight for IN_FLIGHT_MS.
   */
  private async settle(buckets: readonly FailureBucket[], outcome: Outcome): Promise<void> {
    await whenConnected(this.redis, this.config.rateLimitStoreTimeoutMs);
    try {
      await withTimeout(
        this.redis.eval(
          SETTLE,
          2 * buckets.length,
          ...this.keys(buckets),
          outcome,
          ...args(buckets),
        ),
        this.config.rateLimitStoreTimeoutMs,
      );
    } catch (err) {
      this.log.warn(`${String(err)}: a sign-in attempt could not be settled`);
    }
  }

  /** The buckets' keys, then their in-flight counts' (a window bucket's `<key>:p`). */
  private keys(buckets: readonly FailureBucket[]): string[] {
    return [
      ...buckets.map((b) => this.prefix + b.key),
      ...buckets.map((b) => `${this.prefix}${b.key}:p`),
    ];
  }
}

function args(buckets: readonly FailureBucket[]): number[] {
  return buckets.flatMap((b) => [
    b.kind === 'progressive' ? 1 : 0,
    b.limit,
    b.windowMs,
    b.baseMs,
    b.capMs,
  ]);
}
