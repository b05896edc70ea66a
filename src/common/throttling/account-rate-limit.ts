import { Inject, Injectable } from '@nestjs/common';
import { createHash } from 'node:crypto';
import { APP_CONFIG, AppConfig } from '../../config/config';
import { DomainError } from '../errors/domain-error';
import { render } from '../errors/problem-details.filter';
import {
  RATE_LIMIT_POLICIES,
  RateLimitPolicy,
  counterKey,
  policyHeaderItem,
  stateHeaderItem,
} from './rate-limit.policies';
import { RedisThrottlerStorage } from './redis-throttler.storage';

/**
 * The counter's tracker for an account under its password: `user:<id>:<digest of the password's
 * epoch>` (users.password_epoch: a rehash of the same password keeps it). A password change starts the account's budgets afresh: whoever spent them with the old
 * password (a thief signing in or refreshing a stolen session in a loop) cannot hold the owner,
 * who has changed it (from a session still signed in), out for the rest of the day. Each password
 * gets one budget; an account's changes are limited to 10 a day (`password-change-day`).
 */
export function accountTracker(userId: string, passwordEpoch: string): string {
  const tag = createHash('sha256')
    .update(`account-limit\0${passwordEpoch}`)
    .digest('base64url')
    .slice(0, 16);
  return `user:${userId}:${tag}`;
}

/**
 * A per-account limit counted where the account is known only inside the handler — a refresh,
 * whose token names it — in the same Redis counters and with the same 429 as the guards'
 * (RateLimit-Policy / RateLimit / Retry-After). Fails open when Redis cannot be asked;
 * RATE_LIMIT_ENABLED=false switches it off.
 */
@Injectable()
export class AccountRateLimit {
  constructor(
    private readonly storage: RedisThrottlerStorage,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  /**
   * A new password starts the account's day of writes afresh (`user-writes-day`, per account —
   * the access token does not name the password): a thief who spent it with a stolen session,
   * which the change ended, no longer holds the owner's writes for the rest of the day. Bounded
   * like the other budgets a change starts afresh: 10 changes a day (`password-change-day`).
   */
  async newPassword(userId: string): Promise<void> {
    if (!this.config.rateLimitEnabled) return;
    await this.storage.reset(counterKey('user-writes-day', `user:${userId}`));
  }

  /**
   * Rethrows `err` — after giving back the hits counted in `hits` (take(…, hits)) when it is
   * answered 503 (render: the database, Redis or the argon2 gate away — the request was not
   * served): a client retrying as Retry-After says through an outage must not spend the account's
   * day on it (ten 503s of a password change held the owner's next change for 24 h), as the
   * guards' `unservedGivenBack` policies give theirs back. Best effort: a Redis that cannot take
   * it leaves the hit counted.
   */
  async rethrowGivingBackUnserved(hits: string[], err: unknown): Promise<never> {
    if (render(err)?.status === 503) await this.giveBack(hits);
    throw err;
  }

  /**
   * Gives back the hits in `hits` (emptying it): counted by an attempt that was not served — a
   * transaction's work run again (its connection died before COMMIT, a collision) counts afresh.
   */
  async giveBack(hits: string[]): Promise<void> {
    for (const key of hits.splice(0)) await this.storage.giveBack(key).catch(() => undefined);
  }

  /**
   * Counts one request of the account `userId` under the named policy — per password when
   * `passwordEpoch` is given (accountTracker), else per account; over its limit: 429 RATE_LIMITED.
   * The counter is added to `hits` when given (rethrowGivingBackUnserved).
   */
  async take(
    policyName: string,
    userId: string,
    passwordEpoch?: string,
    hits?: string[],
  ): Promise<void> {
    if (!this.config.rateLimitEnabled) return;
    const policy = policyNamed(policyName);
    const windowMs = policy.windowSeconds * 1000;
    const key = counterOf(policy, userId, passwordEpoch);
    let record;
    try {
      record = await this.storage.increment(key, windowMs, policy.limit, windowMs, policy.name);
    } catch {
      return; // fail open, as the policy says
    }
    if (!record.isBlocked) {
      hits?.push(key);
      return;
    }
    throw spent(policy, record.timeToExpire);
  }

  /**
   * Refuses with take's very 429 when the account's count under the named policy is spent
   * already — counting nothing. Asked before a password is checked: answered only after the
   * check, a spent day refused the right password (429) and not a wrong one (401, its guess then
   * handed back unused), so anyone could test passwords at such an account for free. Now every
   * attempt at it is refused alike; `take`, after the check, still settles the last unit between
   * concurrent ones (two right passwords with one left: one of them signs in). `userId` null (no
   * such account) asks a counter no account has — the same round trip — and is never refused:
   * an unknown email has no day to spend. Fails open, as take does.
   */
  async refuseIfSpent(
    policyName: string,
    userId: string | null,
    passwordEpoch?: string,
  ): Promise<void> {
    if (!this.config.rateLimitEnabled) return;
    const policy = policyNamed(policyName);
    // a connection being replaced is waited out (as the sign-in limiter waits): asked into its
    // gap, the question failed open, and the count after the check told the passwords apart again
    await this.storage.connected();
    let record;
    try {
      record = await this.storage.peek(counterOf(policy, userId ?? NO_ACCOUNT, passwordEpoch));
    } catch {
      return; // fail open, as the policy says
    }
    // (take refuses the hit past the limit: with `limit` counted, the next one is refused)
    if (record.totalHits >= policy.limit) throw spent(policy, record.timeToExpire);
  }
}

/** The user id an unknown account is asked under (refuseIfSpent): no account's (ids are UUIDs). */
const NO_ACCOUNT = '-';

function policyNamed(name: string): RateLimitPolicy {
  const policy = RATE_LIMIT_POLICIES.find((p) => p.name === name);
  if (!policy) throw new Error(`no rate-limit policy ${name}`);
  return policy;
}

/** The account's counter under `policy`: per password when `passwordEpoch` is given. */
function counterOf(policy: RateLimitPolicy, userId: string, passwordEpoch?: string): string {
  return counterKey(
    policy.name,
    passwordEpoch === undefined ? `user:${userId}` : accountTracker(userId, passwordEpoch),
  );
}

/** The 429 of a spent account limit, its window ending in `seconds`. */
function spent(policy: RateLimitPolicy, seconds: number): DomainError {
  return new DomainError('RATE_LIMITED', 'Too many requests for this account; retry later.', {
    headers: {
      'Retry-After': String(Math.max(1, seconds)),
      'RateLimit-Policy': policyHeaderItem(policy.name, policy.limit, policy.windowSeconds),
      RateLimit: stateHeaderItem(policy.name, 0, seconds),
    },
  });
}
