import { Inject, Injectable, OnModuleInit, Optional } from '@nestjs/common';
import { Algorithm, hash, verify } from '@node-rs/argon2';
import { normalizeIp } from '@nestjs/throttler';
import { randomBytes } from 'node:crypto';
import { isIPv4 } from 'node:net';
import { normalizePassword } from './password-form';
import { ConcurrencyGate } from '../common/throttling/concurrency-gate';
import { isPublishedDemoCredential } from './demo-credentials';
import { APP_CONFIG, AppConfig, isLoopbackHost } from '../config/config';
import { SecureRandom } from './secure-random';
import { networkOf } from '../common/throttling/rate-limit.policies';

export interface Argon2Params {
  /** KiB */
  memoryCost: number;
  timeCost: number;
  parallelism: number;
}

/** OWASP's minimum for argon2id: m = 19 MiB, t = 2, p = 1. Nothing below is accepted. */
export const OWASP_MINIMUM: Argon2Params = { memoryCost: 19_456, timeCost: 2, parallelism: 1 };

/** What new hashes are made with. Raise these and existing hashes are upgraded at next login. */
const ARGON2_PARAMS: Argon2Params = OWASP_MINIMUM;

/** Overrides ARGON2_PARAMS (tests, or a deployment that can afford more). */
const PASSWORD_HASH_PARAMS = Symbol('PASSWORD_HASH_PARAMS');

/**
 * argon2 runs at once per process by default (PASSWORD_HASH_CONCURRENCY). One: each run holds
 * its 19 MiB while it lasts, and a second one at once took the API's peak resident memory from
 * ~176 to ~198 MiB during a burst of sign-ups (issue 14's budget is 200 MiB per process). With
 * API_PROCESSES > 1 each process has its own gate.
 */
const DEFAULT_HASH_CONCURRENCY = 1;
/** Callers that may wait for an argon2 slot; one more is refused at once (503). */
export const HASH_QUEUE_LIMIT = 32;
/** A caller still waiting for a slot after this long is refused (503). */
const HASH_MAX_WAIT_MS = 5_000;
/**
 * Places in the queue (running or waiting) one client network may hold at once (holderOf: an
 * IPv6 /48, or one IPv4 address) — one more is refused at once (503). Per-client limits count
 * requests per minute, not places: a host with a routed /48 signing in to an account of its own
 * from many /64s (each then one of the account's own clients, in the priority lane) filled the
 * whole queue, the owners' way in included — and so did two IPv4 addresses with login-ip's 20
 * sign-ins each at once, when an IPv4 address held no share. A share, not a window: a neighbour in
 * the /48 (or behind the same IPv4 address: one NAT) gets its own network's sign-ins refused
 * (503, Retry-After 1 s) while it floods, never anyone's afterwards. Every hash and verification
 * of a request names its client (sign-in, the queue board, registration, password change); only
 * the CLI's (admin:create) name none.
 */
export const HASH_PLACES_PER_NETWORK = 4;

/** How a hash or verification waits for its turn: the priority lane, and the client it is for. */
export interface HashTurn {
  priority?: boolean;
  /**
   * The client's IP as the request resolved it (TRUST_PROXY applied): its IPv6 /48, or the IPv4
   * address itself, holds at most HASH_PLACES_PER_NETWORK places (holderOf).
   */
  client?: string;
}

/**
 * Salt length of hashes made from the NFKC form: its mark. Hashes made before passwords were
 * normalized carry the library's 16-byte salts; a 24-byte salt (32 base64 characters in the PHC
 * string) says the hash holds the NFKC form, so only that form is ever verified against it.
 */
const NFKC_SALT_BYTES = 24;
const NFKC_SALT_B64_LENGTH = 32;

/** True when `phc` was made from a password's NFKC form (its salt is NFKC_SALT_BYTES long). */
const holdsNormalized = (phc: string): boolean =>
  phc.split('$')[4]?.length === NFKC_SALT_B64_LENGTH;

/** Reads m, t and p from an argon2id PHC string `$argon2id$v=19$m=…,t=…,p=…$salt$hash`. */
export function parseParams(phc: string): { m: number; t: number; p: number } | null {
  const match = /^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$/.exec(phc);
  return match ? { m: Number(match[1]), t: Number(match[2]), p: Number(match[3]) } : null;
}

/**
 * argon2id password hashing (@node-rs/argon2); the PHC string records its parameters.
 *
 * Every hash and verification passes a ConcurrencyGate: at most PASSWORD_HASH_CONCURRENCY run
 * at once (each takes one of libuv's 4 pool threads and ~19 MiB; default 1), at most HASH_QUEUE_LIMIT wait,
 * none longer than HASH_MAX_WAIT_MS; the others get 503 SERVICE_UNAVAILABLE with Retry-After.
 * So a burst of sign-in attempts is answered quickly instead of stalling file I/O and every other
 * sign-in behind a growing queue of argon2 work. A sign-in from one of the account owner's own
 * clients (FailedAttemptLimiter.signIn says which) waits in the gate's priority lane: strangers'
 * guesses at random emails fill the other one, not the owner's way in — and so do a signed-in
 * session's password change (its check of the current password and the new hash): the owner must
 * be able to change a leaked password while strangers flood the sign-in.
 */
@Injectable()
export class PasswordHasher implements OnModuleInit {
  readonly params: Argon2Params;
  readonly gate: ConcurrencyGate;
  /** A real hash of a random secret, verified against for unknown emails (equal timing). */
  private dummy?: Promise<string>;
  /**
   * Whether the published demo passwords sign in: only a development instance on loopback — one
   * bound beyond it (HOST 0.0.0.0: a container, a LAN demo) would let anyone reaching it in as the
   * demo admin, whatever JWT_SECRET it was given.
   */
  private readonly demoPasswordsWork: boolean;

  constructor(
    private readonly random: SecureRandom,
    @Optional() @Inject(PASSWORD_HASH_PARAMS) params?: Argon2Params,
    @Optional()
    @Inject(APP_CONFIG)
    config?: Pick<AppConfig, 'passwordHashConcurrency'> &
      Partial<Pick<AppConfig, 'isDevelopment' | 'http'>>,
  ) {
    this.params = params ?? ARGON2_PARAMS;
    this.demoPasswordsWork =
      (config?.isDevelopment ?? false) &&
      (config?.http === undefined ||
        // (behind a proxy of its own, TRUST_PROXY, it is reachable beyond this machine too)
        (isLoopbackHost(config.http.host) && !config.http.trustProxy));
    this.gate = new ConcurrencyGate({
      concurrency: config?.passwordHashConcurrency ?? DEFAULT_HASH_CONCURRENCY,
      maxQueued: HASH_QUEUE_LIMIT,
      maxWaitMs: HASH_MAX_WAIT_MS,
      placesPerHolder: HASH_PLACES_PER_NETWORK,
    });
    if (
      this.params.memoryCost < OWASP_MINIMUM.memoryCost ||
      this.params.timeCost < OWASP_MINIMUM.timeCost ||
      this.params.parallelism < OWASP_MINIMUM.parallelism
    ) {
      throw new Error('argon2id parameters below the OWASP minimum (m=19456, t=2, p=1)');
    }
  }

  onModuleInit(): void {
    // made at boot, so the first unknown-email login is not slower than the others
    this.dummyHash().catch(() => undefined);
  }

  /**
   * The password's NFKC form, hashed (marked by its salt's length, NFKC_SALT_BYTES). Throws 503
   * SERVICE_UNAVAILABLE when the gate is full (see the class comment).
   */
  hash(password: string, options: HashTurn = {}): Promise<string> {
    const normalized = normalizePassword(password);
    const salt = randomBytes(NFKC_SALT_BYTES);
    return this.gate.run(
      () => hash(normalized, { algorithm: Algorithm.Argon2id, ...this.params, salt }),
      turn(options),
    );
  }

  /**
   * False for a wrong password and for a malformed stored hash; throws only 503
   * SERVICE_UNAVAILABLE when the gate is full (nothing was verified then). One argon2 run, always:
   * a hash made from the NFKC form is verified against the password's NFKC form; one made before
   * passwords were normalized, against the password as typed — as it was made — and it is
   * rehashed from the NFKC form at the next sign-in (needsRehash). Never two runs: that would
   * double what an attacker's guess costs, and tell by its timing which accounts hold an old hash
   * (an unknown email's dummy hash is a new one).
   */
  verify(phc: string, password: string, options: HashTurn = {}): Promise<boolean> {
    const form = holdsNormalized(phc) ? normalizePassword(password) : password;
    return this.gate.run(async () => {
      try {
        return await verify(phc, form);
      } catch {
        return false; // a malformed stored hash
      }
    }, turn(options));
  }

  /**
   * A sign-in's check of `password` against the account found by its email (null: unknown email,
   * verified against the dummy hash for equal timing). Outside development — or in development
   * bound beyond loopback — a published demo password (auth/demo-credentials) fails the same way,
   * whatever the account's stored hash.
   */
  verifySignIn(
    account: { email: string; passwordHash: string } | null,
    password: string,
    options: HashTurn = {},
  ): Promise<boolean> {
    // the demo pair in any spelling that normalizes to it (full-width letters, say) is the demo pair
    if (
      !account ||
      (!this.demoPasswordsWork &&
        isPublishedDemoCredential(account.email, normalizePassword(password)))
    ) {
      return this.verifyDummy(password, options);
    }
    return this.verify(account.passwordHash, password, options);
  }

  /** Spends the same work as a real verification, then fails. */
  async verifyDummy(password: string, options: HashTurn = {}): Promise<false> {
    await this.verify(await this.dummyHash(), password, options);
    return false;
  }

  /** Made once; made again on the next call if the gate refused it. */
  private dummyHash(): Promise<string> {
    this.dummy ??= this.hash(this.random.token(32)).catch((err: unknown) => {
      this.dummy = undefined;
      throw err;
    });
    return this.dummy;
  }

  /**
   * True when the stored hash is not argon2id v19, was made with weaker parameters, or was made
   * before passwords were normalized (holdsNormalized).
   */
  needsRehash(phc: string): boolean {
    const p = parseParams(phc);
    return (
      !p ||
      !holdsNormalized(phc) ||
      p.m < this.params.memoryCost ||
      p.t < this.params.timeCost ||
      p.p < this.params.parallelism
    );
  }
}

/** The gate's turn for a hash: its lane, and the client's network as the holder of its place. */
function turn(options: HashTurn): { priority?: boolean; holder?: string } {
  return {
    priority: options.priority,
    holder: options.client === undefined ? undefined : holderOf(options.client),
  };
}

/**
 * Whose places a client's hash takes (HASH_PLACES_PER_NETWORK): an IPv6 client's /48 (networkOf),
 * an IPv4 client's address (an IPv4-mapped one's too) — one subscriber's, as a /48 is one site's;
 * held by nobody, two IPv4 addresses filled the queue. Loopback holds none: it is this machine — a
 * local tool, or a proxy on it that TRUST_PROXY does not name, whose clients all arrive as its
 * address and would all hold one address's places (the per-address request limits count them as
 * one client already: the fix there is naming the proxy).
 */
function holderOf(client: string): string | undefined {
  const network = networkOf(client);
  if (network !== undefined) return network;
  const ip = normalizeIp(client); // an IPv4-mapped IPv6 address as its IPv4 one
  return isIPv4(ip) && !ip.startsWith('127.') ? ip : undefined;
}
