import { Inject, Injectable, OnApplicationShutdown } from '@nestjs/common';
import { APP_CONFIG, AppConfig } from '../config/config';
import { AdvisoryLockSession, SessionLockHold } from '../database/advisory-lock-session';
import { lockUrlVariable } from '../database/connection-refusal';

/**
 * How long the email-lock session may go without a statement (a heartbeat every third of it)
 * before the server ends it, and its locks with it. A worker frozen mid-send (SIGSTOP, a paused
 * container: its kernel still answers the server's keepalives) kept its deliveries' locks for as
 * long as it stayed frozen; each twin attempt then waited out its budget as "busy", and after a
 * day and a half of attempts the email was failed — lost once the reconciliation's rounds ran out.
 * Longer than any mail server waits for a client in a conversation (RFC 5321 §4.5.3.2: at most 10
 * minutes, for the answer to the final "."): a holder frozen past it has lost any conversation it
 * was in. A duplicate stays possible when it was frozen after its last look at the lock and before
 * the server accepted the message (it sends when it runs again, as the next attempt did) — the
 * rarer and lesser cost than an email lost. PostgreSQL 14 or later (`idle_session_timeout`); on 13
 * a frozen worker keeps its locks as before.
 */
export const EMAIL_LOCK_IDLE_SESSION_MS = 11 * 60_000;

/** The advisory lock class of email deliveries (two-int form: 'EM', hashtext(key)). */
const EMAIL_LOCK_CLASS = 0x454d;

/**
 * "This process is sending email <key> now": a session-level advisory lock on the delivery key,
 * held on the process's email-lock session (`application_name = shop-orders-email-locks/<8 hex>`) from
 * before the claim until the outcome is recorded. It dies with the worker: PostgreSQL ends a
 * killed process's session, and with it the lock, as soon as the socket closes. So a delivery
 * left 'sending' whose lock can be taken is abandoned — the next attempt takes it over at once,
 * with no lease to wait out — and one whose lock is held is being sent right now.
 */
@Injectable()
export class EmailDeliveryLocks implements OnApplicationShutdown {
  private readonly session: AdvisoryLockSession;

  constructor(@Inject(APP_CONFIG) config: AppConfig) {
    this.session = new AdvisoryLockSession(config.database.lockUrl, {
      urlVariable: lockUrlVariable(config.database),
      applicationName: 'shop-orders-email-locks',
      idleSessionTimeoutMs: EMAIL_LOCK_IDLE_SESSION_MS,
    });
  }

  /** The delivery's lock without waiting, or null while another attempt holds it. */
  tryHold(key: string): Promise<SessionLockHold | null> {
    return this.session.tryHold(key, `${EMAIL_LOCK_CLASS}, hashtext($1::text)`, [key]);
  }

  async onApplicationShutdown(): Promise<void> {
    await this.session.close();
  }
}
