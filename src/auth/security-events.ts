import { Injectable, Logger } from '@nestjs/common';
import { DomainError } from '../common/errors/domain-error';
import { printableForLog } from '../common/logging/printable';
import { GATE_BUSY } from '../common/throttling/concurrency-gate';
import { SIGN_IN_STORE_DOWN } from '../common/throttling/failed-attempt-limiter';
import type { Role } from './permissions';

/** Where a password sign-in came through. */
export type SignInDoor = 'login' | 'queue-board';

export type SecurityEvent =
  // `client`: the address the request came from (TRUST_PROXY applied) — the thief's or the owner's
  | { event: 'refresh_token_reuse'; userId: string; familyId: string; client: string }
  | { event: 'password_changed'; userId: string; client: string }
  // a password sign-in: `account` is a keyed tag of the email (SessionIssuer#accountTag: the same
  // for every attempt at one email, and no email in the log — an unknown one has no user id),
  // `client` the address as the request resolved it (TRUST_PROXY applied)
  | { event: 'sign_in'; door: SignInDoor; userId: string; role: Role; client: string }
  | {
      event: 'sign_in_failed';
      door: SignInDoor;
      account: string;
      userId: string | null;
      client: string;
    }
  | {
      // a 429: `limit` names what refused — a sign-in limit (`signin-account`, `signin-device`,
      // …: guesses), `login-account-day` (the account's day spent by someone who has the
      // password signing in in a loop — every attempt at it refused then, right or wrong); or a
      // 503, `store-unavailable` (Redis could not count: an outage, not an attack) or
      // `hash-gate` (the password checks' queue full: a spray that keeps it full, or a crowd)
      event: 'sign_in_refused';
      door: SignInDoor;
      account: string;
      userId: string | null;
      client: string;
      limit: string;
    };

/** Who a sign-in was for: the account's tag, and its id and role when the email is an account's. */
export interface SignInSubject {
  account: string;
  user: { id: string; role: Role } | null;
}

/**
 * Where security-relevant events go (today: a structured log line under the `Security` context,
 * which log shipping can alert on) — warn-level, but for a customer's successful sign-in (info:
 * the ordinary traffic; staff's and an admin's are warn, as every failure and refusal). Injectable so tests can
 * assert them. Never put credentials, tokens or an email in an event.
 */
@Injectable()
export class SecurityEvents {
  private readonly logger = new Logger('Security');

  record(event: SecurityEvent): void {
    // the address printable ASCII only: X-Forwarded-For's, behind a proxy, is the client's to write
    const line = { ...event, client: printableForLog(event.client) };
    if (event.event === 'sign_in' && event.role === 'customer') this.logger.log(line, event.event);
    else this.logger.warn(line, event.event);
  }

  /**
   * Runs a password sign-in (`attempt`: null for a wrong password, or a refusal thrown) and
   * records what came of it: signed in, failed, or refused by the sign-in limits (429). Without
   * these, credential stuffing, an account's ceiling being spent, or a stolen admin password
   * signing in left no line naming the account or the client.
   */
  async signIn<T>(
    door: SignInDoor,
    subject: SignInSubject,
    client: string,
    attempt: () => Promise<T | null>,
    signedInAs: (result: T) => { id: string; role: Role },
  ): Promise<T | null> {
    const who = { door, account: subject.account, userId: subject.user?.id ?? null, client };
    let result: T | null;
    try {
      result = await attempt();
    } catch (err) {
      if (
        err instanceof DomainError &&
        (err.code === 'RATE_LIMITED' ||
          err.message === SIGN_IN_STORE_DOWN ||
          err.message === GATE_BUSY)
      )
        this.record({ event: 'sign_in_refused', ...who, limit: refusingLimit(err) });
      throw err;
    }
    if (result === null) this.record({ event: 'sign_in_failed', ...who });
    else {
      const user = signedInAs(result);
      this.record({ event: 'sign_in', door, userId: user.id, role: user.role, client });
    }
    return result;
  }
}

/**
 * What refused a sign-in: its 429's RateLimit-Policy's first name, or (503) the store being down
 * or the password checks' gate full.
 */
function refusingLimit(err: DomainError): string {
  if (err.message === SIGN_IN_STORE_DOWN) return 'store-unavailable';
  if (err.message === GATE_BUSY) return 'hash-gate';
  const policy = err.options?.headers?.['RateLimit-Policy'];
  return (typeof policy === 'string' && /^"([^"]+)"/.exec(policy)?.[1]) || 'unknown';
}
