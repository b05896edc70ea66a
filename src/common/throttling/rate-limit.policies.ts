import { normalizeIp } from '@nestjs/throttler';
import { createHash } from 'node:crypto';
import type { RateLimitScope } from './rate-limit.decorator';
import { normalizeEmail } from '../email';

/** What a policy counts by. */
/** `session`: the access token's session (a stolen one spends its own budget, not the owner's). */
/** `signed-in`: the signed-in user, and no one else (an anonymous request is not counted). */
/**
 * `network`: an IPv6 client's /48 (NETWORK_PREFIX) — not counted for IPv4. One host with a routed
 * /48 (a tunnel broker gives them away) is 65,536 /64 "clients": per-/64 limits alone gave it
 * 65,536 times their budget.
 */
export type Tracker = 'ip' | 'network' | 'account' | 'user' | 'session' | 'signed-in' | 'customer';

/** The IPv6 prefix a `network` policy or bucket counts by: a site's usual allocation. */
const NETWORK_PREFIX = 48;
/**
 * Registrations a /48 gets, in /64 clients' worth: a /56's (a home connection's usual allocation;
 * a /60 is common too). A /48 holds thousands of households — a provider's, a campus's — and one
 * of them must not be able to spend it for the others; an attacker with all of it gets this, not
 * 65,536. Requests have no per-/48 limit (ARCHITECTURE.md, the rate limits, says why: one /56,
 * 256 /64s, would spend it for all its neighbours, and a refusal costs about what a cheap answer
 * does); the costly work is bounded per /48 instead — registrations here, catalog builds
 * (CatalogCache), the argon2 gate's share, failed sign-ins (SIGN_IN_NETWORK_SHARE, sparing the
 * account's own clients: a neighbour must never lock the owner out).
 */
const NETWORK_SHARE = 256;
/** Requests one client (an IPv6 /64) may make a minute, on any route (`default`). */
const REQUESTS_PER_MINUTE = 300;
/** Accounts one address (an IPv6 /64) may open in a day (`register-ip-day`; 10 in any hour). */
const REGISTRATIONS_PER_DAY = 40;

/**
 * Client policies (IP, account) run before authentication, so unauthenticated and badly
 * authenticated traffic is counted too; per-user policies run after it.
 */
export type RateLimitPhase = 'before-auth' | 'after-auth';

export interface RateLimitPolicy {
  name: string;
  limit: number;
  windowSeconds: number;
  tracker: Tracker;
  /** Only on routes marked @RateLimit(scope); undefined = every route (but `exceptScopes`). */
  scope?: RateLimitScope;
  /** Routes of these scopes have their own budget instead of this one. */
  exceptScopes?: readonly RateLimitScope[];
  /** Only requests that may write (not GET, HEAD or OPTIONS). */
  writesOnly?: boolean;
  /**
   * Requests of this scope are refused while fewer than `requests` would be left after them:
   * what they start needs those (an order its payment start or cancel).
   */
  headroom?: { scope: RateLimitScope; requests: number };
  /**
   * Redis unreachable or too slow: `true` refuses the request (503 SERVICE_UNAVAILABLE with
   * Retry-After) — for login, registration and password changes, where brute force matters
   * more than availability; `false` lets it through (fail open) — for everything else.
   */
  failClosed: boolean;
  /**
   * Counted inside the handler once what it counts is known (AccountRateLimit: a refresh's
   * account, a verified password), never by the guards — which would count every attempt, a
   * wrong guess included.
   */
  inHandler?: true;
  /**
   * Counted after authentication although it counts by address: what it bounds (a password
   * check) only a signed-in request reaches, and a request with no valid token counted before
   * it would let anyone spend the owner's budget without an account.
   */
  afterAuth?: true;
  /**
   * A request answered 503 (the shop could not serve it: the database or the payment provider
   * away) gives its hit back (RateLimitGuard#giveBackUnserved): a client retrying as Retry-After
   * says through a few hours' outage spent a day's budget, and was refused after the outage.
   */
  unservedGivenBack?: true;
}

/** The named policies. Limits are shared by every API instance (counters live in Redis). */
export const RATE_LIMIT_POLICIES: readonly RateLimitPolicy[] = [
  {
    name: 'default',
    limit: REQUESTS_PER_MINUTE,
    windowSeconds: 60,
    tracker: 'ip',
    failClosed: false,
    exceptScopes: ['webhook'],
  },
  {
    name: 'webhook-ip',
    limit: 6000,
    windowSeconds: 60,
    tracker: 'ip',
    scope: 'webhook',
    failClosed: false,
  },
  {
    name: 'login-ip',
    limit: 20,
    windowSeconds: 60,
    tracker: 'ip',
    scope: 'login',
    failClosed: true,
  },
  // (A registration answered 503 keeps its hits, unlike a day's writes: it hashes the password
  // before the database is asked, and given back, a database away would let one address spend the
  // argon2 gate — ~50 ms of a core each — at its `default` rate, not 10 an hour. A blink costs a
  // retry or two of the hour's 10.)
  {
    name: 'register-ip',
    limit: 10,
    windowSeconds: 3600,
    tracker: 'ip',
    scope: 'register',
    failClosed: true,
  },
  {
    name: 'register-net',
    limit: 10 * NETWORK_SHARE,
    windowSeconds: 3600,
    tracker: 'network',
    scope: 'register',
    failClosed: true,
  },
  // … and per day (cost review): every per-account bound — writes, refreshes, abandoned orders,
  // cancellation emails — is multiplied by the accounts one address can open, and at 10 an hour
  // that was 240 a day (~4 GB of idempotency records a day from one address, each account
  // within its own limits); a shop's customers behind one address do not open 40 a day
  {
    name: 'register-ip-day',
    limit: REGISTRATIONS_PER_DAY,
    windowSeconds: 86_400,
    tracker: 'ip',
    scope: 'register',
    failClosed: true,
  },
  {
    name: 'register-net-day',
    limit: REGISTRATIONS_PER_DAY * NETWORK_SHARE,
    windowSeconds: 86_400,
    tracker: 'network',
    scope: 'register',
    failClosed: true,
  },
  {
    // API.md: registration is limited per IP and per account — the account being the email
    // asked for, normalized (many clients trying one address, e.g. to learn it is taken)
    name: 'register-account',
    limit: 10,
    windowSeconds: 3600,
    tracker: 'account',
    scope: 'register',
    failClosed: true,
  },
  {
    name: 'order-create',
    limit: 30,
    windowSeconds: 60,
    tracker: 'user',
    scope: 'order-create',
    failClosed: false,
  },
  {
    // every other write of a signed-in user — each may store a 24 h idempotency record (the whole
    // order, for a repeated cancel or payment start), a refresh of the cart, a review — counted
    // per account: one account on many addresses cannot grow the database at many per-IP rates
    name: 'user-writes',
    limit: 120,
    windowSeconds: 60,
    tracker: 'signed-in',
    writesOnly: true,
    exceptScopes: ['order-create', 'password-change'],
    failClosed: false,
  },
  {
    // a customer account's writes over a day: at 120 a minute one account stored 172,800
    // idempotency records a day (a repeated cancel of a 100-line order keeps its ~25 KB answer
    // for 24 h: gigabytes); a customer's day is far below this. Orders count too, and one is
    // placed only while the day leaves room to pay for or cancel it — and the others open (two
    // writes each for PURCHASE_LIMIT_OPEN_ORDERS' 3) — never one that could be neither. Staff and
    // admins are not counted (a catalog import is many writes, by people the shop trusts).
    name: 'user-writes-day',
    limit: 2000,
    windowSeconds: 86_400,
    tracker: 'customer',
    writesOnly: true,
    headroom: { scope: 'order-create', requests: 6 },
    exceptScopes: ['password-change'],
    failClosed: false,
    unservedGivenBack: true,
  },
  {
    // refreshes of one account's sessions (each rotation keeps a row for reuse detection as long
    // as its session lives): counted per account inside the refresh, whose token names the
    // account (AccountRateLimit) — never by the guards, the route being anonymous
    name: 'refresh-account',
    limit: 60,
    windowSeconds: 60,
    tracker: 'signed-in',
    scope: 'refresh',
    failClosed: false,
    inHandler: true,
  },
  {
    // and over a day: at 60 a minute one account kept 86,400 token rows a day for as long as its
    // sessions live (30 days) and 30 days after — every sign-in of its own slower for them (a
    // password change reads them all). A client refreshing every access token's 15 minutes
    // needs 96 a day per device.
    name: 'refresh-account-day',
    limit: 2000,
    windowSeconds: 86_400,
    tracker: 'signed-in',
    scope: 'refresh',
    failClosed: false,
    inHandler: true,
  },
  {
    // sign-ins of one account (each opens a session: a family and a token row, kept while it lives
    // and 30 days after its end — `session-limit` ends the 101st at once, but keeps its rows): at
    // login-ip's 20 a minute, one address holding the password kept 28,800 of each a day, ~864k
    // over the retention, and a password change updated them all. Counted inside the sign-in once
    // the password is verified (AccountRateLimit): only the password's holder spends it, never a
    // stranger guessing. Once spent, every sign-in at the account is refused before its password
    // is checked (refuseIfSpent), so the 429 never tells a right password from a wrong one. A
    // person signs in a few times a day per device.
    name: 'login-account-day',
    limit: 500,
    windowSeconds: 86_400,
    tracker: 'signed-in',
    scope: 'login',
    failClosed: false,
    inHandler: true,
  },
  {
    // each checks a password (argon2, behind one gate per process): with login's 20 a minute,
    // one address gets at most 30 checks a minute, however many sessions it signs in (40 argon2
    // runs with the new password's hash of each successful change). Only signed-in requests
    // count: ten anonymous 401s a minute from the owner's address (a shared network's neighbour)
    // kept the owner from changing a leaked password, and checked none.
    name: 'password-change-ip',
    limit: 10,
    windowSeconds: 60,
    tracker: 'ip',
    scope: 'password-change',
    failClosed: true,
    afterAuth: true,
  },

  {
    // password changes made (the current password verified) of one account a day: each new
    // password starts the account's sign-in and refresh budgets afresh (accountTracker), so
    // changing it in a loop would lift their bound — at 10, an account signs in at most 5,500
    // times a day. Counted only once the current password is right: a stolen session's wrong
    // guesses cannot spend the owner's changes; once spent, a right and a wrong one are refused
    // alike, before the check (refuseIfSpent).
    name: 'password-change-day',
    limit: 10,
    windowSeconds: 86_400,
    tracker: 'signed-in',
    scope: 'password-change',
    failClosed: false,
    inHandler: true,
  },
  {
    name: 'password-change',
    limit: 5,
    windowSeconds: 60,
    tracker: 'session',
    scope: 'password-change',
    failClosed: true,
  },
];

export function phaseOf(policy: RateLimitPolicy): RateLimitPhase {
  if (policy.afterAuth) return 'after-auth';
  return policy.tracker === 'ip' || policy.tracker === 'network' || policy.tracker === 'account'
    ? 'before-auth'
    : 'after-auth';
}

export function appliesTo(policy: RateLimitPolicy, scope: RateLimitScope | undefined): boolean {
  if (policy.inHandler) return false;
  if (scope !== undefined && policy.exceptScopes?.includes(scope)) return false;
  return policy.scope === undefined || policy.scope === scope;
}

export interface TrackedRequest {
  /** The client IP as Fastify resolved it (X-Forwarded-For only behind a trusted proxy). */
  ip: string;
  userId?: string;
  sessionId?: string;
  /** The signed-in principal's role. */
  role?: string;
  body?: unknown;
}

/**
 * A client's per-IP tracker as the `default` policy counts it (`trackerFor('ip')`: IPv6 per /64),
 * with an IPv4 address taken as it is, without parsing it (the cached reads' hot path).
 */
export function ipTracker(ip: string): string {
  // undefined once the client has gone (Fastify reads the socket's address): one shared tracker,
  // not a TypeError logged for every shopper who gave up mid-request
  if ((ip as string | undefined) === undefined) return 'ip:gone';
  return ip.includes(':') ? (trackerFor('ip', { ip }) ?? `ip:${ip}`) : `ip:${ip}`;
}

/**
 * A client's IPv6 /48 as the `network` policies count it (`trackerFor('network')`), for the
 * catalog's build budget (payerOf); undefined for IPv4 — one address, which its per-IP tracker
 * counts already — told apart without parsing it, and for loopback and IPv4-mapped addresses.
 */
export function networkTracker(ip: string): string | undefined {
  if ((ip as string | undefined) === undefined || !ip.includes(':')) return undefined;
  return trackerFor('network', { ip }) ?? undefined;
}

/**
 * The identity a policy counts for this request, or null when it does not apply (a login
 * body without an email string: validation answers 400 anyway). IPv6 clients count per /64,
 * as one host usually owns a whole /64.
 */
export function trackerFor(tracker: Tracker, request: TrackedRequest): string | null {
  switch (tracker) {
    case 'ip':
      return `ip:${normalizeIp(request.ip)}`;
    case 'network': {
      const network = networkOf(request.ip);
      return network ? `net:${network}` : null;
    }
    case 'user':
      return request.userId ? `user:${request.userId}` : `ip:${normalizeIp(request.ip)}`;
    case 'session':
      if (request.sessionId) return `session:${request.sessionId}`;
      return request.userId ? `user:${request.userId}` : `ip:${normalizeIp(request.ip)}`;
    case 'signed-in':
      return request.userId ? `user:${request.userId}` : null;
    case 'customer':
      return request.userId && request.role === 'customer' ? `user:${request.userId}` : null;
    case 'account': {
      const email = (request.body as { email?: unknown } | null | undefined)?.email;
      return typeof email === 'string' ? `account:${normalizeEmail(email)}` : null;
    }
  }
}

/** `RateLimit-Policy` item (draft-ietf-httpapi-ratelimit-headers): quota and window. */
export function policyHeaderItem(name: string, limit: number, windowSeconds: number): string {
  return `"${name}";q=${limit};w=${windowSeconds}`;
}

/** A policy's Redis counter for one tracked identity (the identity hashed, never stored as is). */
export function counterKey(policyName: string, tracker: string): string {
  return `${policyName}:${createHash('sha256').update(tracker).digest('base64url')}`;
}

/** `RateLimit` item: remaining quota and seconds until the window resets. */
export function stateHeaderItem(name: string, remaining: number, resetSeconds: number): string {
  return `"${name}";r=${Math.max(0, remaining)};t=${Math.max(0, resetSeconds)}`;
}

/*
 * Failed sign-ins (password guesses), for POST /v1/auth/login and the queue board's HTTP Basic
 * sign-in alike: one mechanism, FailedAttemptLimiter, over these buckets. Unlike the request
 * policies above they count only FAILED attempts, and they count before the password is
 * verified: an attempt is reserved atomically in Redis first (refused when a bucket is
 * exhausted), then verified; a success gives its reservation back.
 */

/**
 * A failure counter in Redis.
 * - `window`: at most `limit` failures per fixed window of `windowMs` (from the first failure);
 *   refused until the window ends.
 * - `progressive`: `limit` failures are free; from the `limit`-th on each failure locks the
 *   bucket for `baseMs · 2^(failures − limit)`, at most `capMs`. Forgotten `windowMs` after the
 *   last failure, and cleared by a success.
 */
export interface FailureBucket {
  /** Redis key below `<REDIS_KEY_PREFIX>:rl:` (hashed identities, never an email in clear). */
  key: string;
  kind: 'window' | 'progressive';
  limit: number;
  windowMs: number;
  baseMs: number;
  capMs: number;
}

/** Where a password is presented. */
export type SignInChannel = 'login' | 'queue-board' | 'password-change';

export interface SignInLimits {
  /** Free failures per (account, client) before the progressive delay starts. */
  failuresPerClient: number;
  /** Failures per account from all clients together per SIGN_IN_ACCOUNT_WINDOW_MS. */
  failuresPerAccount: number;
  /**
   * Failed logins per client over all accounts per SIGN_IN_ACCOUNT_WINDOW_MS: a client trying a
   * fresh email each time meets no per-account bucket, yet each try costs a full argon2 hash
   * (a dummy one for an unknown email), and a few such clients would hold the hashing gate.
   */
  failuresPerIp: number;
}

/** First delay after the free failures of one client for one account; doubles each failure. */
export const SIGN_IN_DELAY_BASE_MS = 1_000;
/** The longest progressive delay. */
const SIGN_IN_DELAY_CAP_MS = 15 * 60_000;
/** How long a client's failures for an account are remembered after the last one. */
const SIGN_IN_PAIR_MEMORY_MS = 60 * 60_000;
/** The window of the per-account ceiling (all clients together). */
const SIGN_IN_ACCOUNT_WINDOW_MS = 15 * 60_000;
/** The queue board: failed Basic sign-ins per client, whatever the accounts, per window. */
export const BOARD_FAILURES_PER_CLIENT = 10;
const BOARD_CLIENT_WINDOW_MS = 15 * 60_000;
/** Wrong current passwords (password change) of one session from all its clients, per window. */
export const PASSWORD_CHANGE_FAILURES_PER_SESSION = 10;

/** The delay a progressive bucket imposes after its `failures`-th failure (0 = none). */
export function progressiveDelayMs(
  failures: number,
  bucket: Pick<FailureBucket, 'limit' | 'baseMs' | 'capMs'>,
): number {
  if (failures < bucket.limit) return 0;
  return Math.min(bucket.capMs, bucket.baseMs * 2 ** Math.min(failures - bucket.limit, 40));
}

const digest = (...parts: string[]) =>
  createHash('sha256').update(parts.join('\0')).digest('base64url');

/**
 * Failed sign-ins a /48 gets over all accounts, in clients' worth (SIGN_IN_FAILURES_PER_IP each):
 * one host rotating through the /64s of its /48 with a fresh email each try costs an argon2 hash
 * per try. Like the client's ceiling it spares the account's own clients: a neighbour filling it
 * keeps a new device from signing in for the window, never the owner's own.
 */
const SIGN_IN_NETWORK_SHARE = 10;

/** The client as the limits see it: the IP, IPv6 per /64. */
const clientOf = (ip: string) => normalizeIp(ip);

/**
 * An IPv6 client's /48 (`2001:db8:1::/48`); undefined for IPv4 (and IPv4-mapped) addresses and
 * loopback: an IPv4 client is one address, which the per-client limits already count as one.
 */
export function networkOf(ip: string): string | undefined {
  const network = normalizeIp(ip, NETWORK_PREFIX);
  return network.endsWith(`/${NETWORK_PREFIX}`) ? network : undefined;
}

/**
 * The Redis hash of the addresses that are the account's own clients — ones it signed in or
 * registered from: one per account, a field per address (knownClientField), at most
 * KNOWN_CLIENTS_PER_ACCOUNT. The account's ceiling does not apply to them (API.md: a stranger can
 * never lock the owner out — the right password from the owner's own client still signs in);
 * their own per-(account, client) bucket still does.
 */
export function knownClientsKey(account: string): string {
  return `signin-known-clients:${digest(normalizeEmail(account))}`;
}

/** An address's field in knownClientsKey. */
export function knownClientField(account: string, ip: string): string {
  return accountClientDigest(account, ip);
}

/**
 * The key per (account, address) that marked it one of the account's own before knownClientsKey:
 * read (a sign-in writes the hash's mark) until the last of them has expired, 90 days after that build.
 * A key per sign-in address, kept 90 days with no cap per account, let one account fill Redis —
 * 500 addresses a day, more with each password change, ~150 bytes each.
 */
export function knownClientKey(account: string, ip: string): string {
  return `signin-known:${accountClientDigest(account, ip)}`;
}

/**
 * The Redis hash of the devices (SessionIssuer#deviceOf) that are the account's own clients: one
 * per account, a field per device (knownDeviceField), at most KNOWN_DEVICES_PER_ACCOUNT.
 */
export function knownDevicesKey(account: string): string {
  return `signin-known-devices:${digest(normalizeEmail(account))}`;
}

/**
 * The key per device that marked it one of the account's own before knownDevicesKey: read (a
 * sign-in writes the hash's mark) until the last of them has expired, 90 days after that build.
 */
export function legacyKnownDeviceKey(account: string, device: string): string {
  return `signin-known-device:${digest(normalizeEmail(account), device)}`;
}

/** A device's field in knownDevicesKey. */
export function knownDeviceField(device: string): string {
  return createHash('sha256').update(device).digest('base64url').slice(0, 22);
}

/**
 * The (account, client) pair as a digest (knownClientKey; a session records it, keyed with a
 * server secret — SessionIssuer#clientKeyOf — so the account's own clients outlive a loss of
 * Redis's marks).
 */
export function accountClientDigest(account: string, ip: string): string {
  return digest(normalizeEmail(account), clientOf(ip));
}

/** A hard window: `limit` failures per `windowMs`, then refused until the window ends. */
function windowBucket(key: string, limit: number, windowMs: number): FailureBucket {
  return { key, kind: 'window', limit, windowMs, baseMs: 0, capMs: 0 };
}

/** A bucket that counts a failure but never refuses for it (its limit out of reach). */
const countedOnly = (bucket: FailureBucket): FailureBucket => ({
  ...bucket,
  limit: Number.MAX_SAFE_INTEGER,
});

/**
 * The buckets a password sign-in is counted in:
 * - login: per (account, client) with progressive delay — a stranger elsewhere never slows the
 *   owner down — the account's ceiling over all clients, and the client's ceiling over all
 *   accounts; the last two never refuse the account's own clients (`knownClient`: knownClientKey)
 *   — the client's ceiling still counts their failures (countedOnly), as anyone's.
 *   A sign-in presenting a device token of the account (`device`: SessionIssuer#deviceOf) is a
 *   client of its own — its pair is (account, device), not (account, address) — so a stranger
 *   behind the owner's address (one NAT, a carrier's shared address) fills the address's pair,
 *   never the device's; the device is one of the owner's own (`knownClient`) while it holds a
 *   mark under the current password (knownDevicesKey: a sign-in from it in 90 days), or its
 *   address does; a device marked under an earlier password only (`'earlier-password'`) is
 *   spared the account's ceiling, not the address's or network's;
 * - queue board: per client over all accounts (a hard window: the board is for a few admins,
 *   and its guesses need no owner-friendly delay) and the same account and network (/48)
 *   ceilings, shared with login so that two doors do not double an attacker's budget; from the account's own clients
 *   (the same mark: a sign-in through login or the board remembers the client) neither, only
 *   login's pair (account, address) — others' failures for other accounts from the admin's
 *   address (a customer trying the board with their own password) no longer lock the admin out
 *   of it; guesses at the admin's email from there still fill the pair, as for login without a
 *   device token (the admin's bearer token still opens the board);
 * - password change (the current password, from a signed-in session): a progressive bucket per
 *   (account, session, client), like login's pair, and a ceiling per session,
 *   PASSWORD_CHANGE_FAILURES_PER_SESSION per window — not login's pair, which a stranger behind
 *   the owner's address (one NAT) fills with wrong logins for the email, and it held the signed-in
 *   owner's change; not the login ceiling, which any stranger can fill; nor one per account,
 *   which a stolen session could fill: the owner must be able to change a leaked password just
 *   then, from any network. A stolen session gets 10 guesses per window, and opening another one
 *   takes the password.
 */
export function signInBuckets(
  channel: SignInChannel,
  account: string,
  ip: string,
  limits: SignInLimits,
  knownClient: boolean | 'earlier-password' = false,
  session?: string,
  device?: string,
): FailureBucket[] {
  const email = normalizeEmail(account);
  const client = clientOf(ip);
  const ceiling = windowBucket(
    `signin-account:${digest(email)}`,
    limits.failuresPerAccount,
    SIGN_IN_ACCOUNT_WINDOW_MS,
  );
  const pair: FailureBucket = {
    key:
      channel === 'login' && device
        ? `signin-device:${digest(email, device)}`
        : channel === 'password-change' && session
          ? `password-change-client:${digest(email, session, client)}`
          : `signin-client:${digest(email, client)}`,
    kind: 'progressive',
    limit: limits.failuresPerClient,
    windowMs: SIGN_IN_PAIR_MEMORY_MS,
    baseMs: SIGN_IN_DELAY_BASE_MS,
    capMs: SIGN_IN_DELAY_CAP_MS,
  };
  // and its network's (IPv6 /48): fresh emails from many /64s of one allocation — one bucket for
  // login and the board (each /64 a board client of its own and a fresh email each try, the
  // board's guesses had no ceiling over the /48: ~650,000 a window on paper)
  const network = networkOf(ip);
  const networkCeiling = network
    ? [
        windowBucket(
          `signin-net:${digest(network)}`,
          limits.failuresPerIp * SIGN_IN_NETWORK_SHARE,
          SIGN_IN_ACCOUNT_WINDOW_MS,
        ),
      ]
    : [];
  if (channel === 'queue-board') {
    // the account's own client: its pair with login's (account, address), as a login from it —
    // not the address's bucket over all accounts, which anyone behind it (one NAT, a customer
    // giving the board their own right password) filled and locked the admin out with (the pair
    // is the email's at this address: guesses at the admin's email from it still fill it)
    if (knownClient) return [pair];
    const boardClient = windowBucket(
      `board-client:${digest(client)}`,
      BOARD_FAILURES_PER_CLIENT,
      BOARD_CLIENT_WINDOW_MS,
    );
    return [boardClient, ceiling, ...networkCeiling];
  }
  if (channel === 'password-change') {
    return [
      pair,
      windowBucket(
        `password-change:${digest(session ?? email)}`,
        PASSWORD_CHANGE_FAILURES_PER_SESSION,
        SIGN_IN_ACCOUNT_WINDOW_MS,
      ),
    ];
  }
  const clientCeiling = windowBucket(
    `signin-ip:${digest(client)}`,
    limits.failuresPerIp,
    SIGN_IN_ACCOUNT_WINDOW_MS,
  );
  // the owner's own client is never refused by the address's or the network's ceiling — but its
  // failures count in them, as anyone's: spared their counting too, a failure at an account used
  // from this address left the ceiling where a failure at any other email moved it, and someone
  // behind the owner's NAT learned which emails were accounts signed in from there
  if (knownClient === true)
    return [pair, countedOnly(clientCeiling), ...networkCeiling.map(countedOnly)];
  // a device that signed in under an earlier password of the account: spared its ceiling only
  if (knownClient === 'earlier-password') return [pair, clientCeiling, ...networkCeiling];
  return [pair, ceiling, clientCeiling, ...networkCeiling];
}
