import { Injectable, Logger } from '@nestjs/common';
import { RefreshTokenRepository } from './refresh-token.repository';

/** How long a session found on record is taken as on record without asking again. */
const KNOWN_MS = 10 * 60_000;
/** How often a database that does not answer is logged. */
const WARN_EVERY_MS = 10_000;
/** Sessions remembered at once, per process (the oldest dropped first beyond it). */
const KNOWN_MAX = 20_000;

/**
 * Whether an access token's session (`fam`) was opened here, for its account (`sub`). A token
 * is signed with the deployment's key, and two deployments given one key (staging with
 * production's JWT_SECRET, its database a copy of production's: the same account ids) accepted
 * each other's tokens — a staging session was the production customer's, orders and cart
 * included (diff review). Its session's record is the one thing the other deployment cannot
 * have: a family row here.
 *
 * One primary-key read per session and process, then remembered for KNOWN_MS (the KNOWN_MAX most
 * recently used sessions): the request path pays a Map lookup. Whether the session is still live is
 * RevokedSessions' question, asked on every request; this one only asks whether it ever was.
 * A database that does not answer is no refusal (logged): the revocation check still holds, and
 * whatever the request needs of the database fails on its own.
 */
@Injectable()
export class SessionsOnRecord {
  private readonly logger = new Logger(SessionsOnRecord.name);
  private readonly known = new Map<string, number>();
  private warnedAt = Number.NEGATIVE_INFINITY;

  constructor(private readonly tokens: RefreshTokenRepository) {}

  async opened(familyId: string, userId: string): Promise<boolean> {
    const key = `${familyId}:${userId}`;
    const now = performance.now();
    const until = this.known.get(key);
    if (until !== undefined && until > now) {
      // the most recently used last: the least recently used go first when full
      this.known.delete(key);
      this.known.set(key, until);
      return true;
    }
    let found: boolean;
    try {
      found = await this.tokens.sessionOpened(familyId, userId);
    } catch (err) {
      // (once per WARN_EVERY_MS: in an outage every new session's request would write one)
      const at = performance.now();
      if (at - this.warnedAt >= WARN_EVERY_MS) {
        this.warnedAt = at;
        this.logger.warn(`could not read whether sessions are on record: ${String(err)}`);
      }
      return true;
    }
    if (!found) return false;
    this.known.delete(key);
    // full: the least recently used one goes (O(1): no scan of the rest, which at 25,000 sessions
    // in use cost ~180 µs a request and a database read each — diff review 2)
    if (this.known.size >= KNOWN_MAX) {
      const oldest = this.known.keys().next();
      if (!oldest.done) this.known.delete(oldest.value);
    }
    this.known.set(key, now + KNOWN_MS);
    return true;
  }
}
