import { Injectable, Logger } from '@nestjs/common';

export type SecurityEvent =
  | { event: 'refresh_token_reuse'; userId: string; familyId: string }
  | { event: 'password_changed'; userId: string };

/**
 * Where security-relevant events go (today: a warn-level structured log line under the
 * `Security` context, which log shipping can alert on). Injectable so tests can assert them.
 * Never put credentials or tokens in an event.
 */
@Injectable()
export class SecurityEvents {
  private readonly logger = new Logger('Security');

  record(event: SecurityEvent): void {
    this.logger.warn(event, event.event);
  }
}
