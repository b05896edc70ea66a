import { Inject, Injectable, OnApplicationShutdown } from '@nestjs/common';
import { APP_CONFIG, AppConfig } from '../config/config';
import { AdvisoryLockSession, SessionLockHold } from '../database/advisory-lock-session';

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
      applicationName: 'shop-orders-email-locks',
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
