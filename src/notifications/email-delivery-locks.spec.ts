import { loadConfig } from '../config/config';
import { AdvisoryLockSession } from '../database/advisory-lock-session';
import { EMAIL_LOCK_IDLE_SESSION_MS, EmailDeliveryLocks } from './email-delivery-locks';

jest.mock('../database/advisory-lock-session');

describe('EmailDeliveryLocks', () => {
  it('holds its locks on a session with an idle limit past any mail conversation (a frozen worker loses them; test/e2e/lock-session-idle.test.ts)', () => {
    new EmailDeliveryLocks(loadConfig({ NODE_ENV: 'development' }));
    expect(AdvisoryLockSession).toHaveBeenCalledWith(
      expect.any(String),
      expect.objectContaining({ idleSessionTimeoutMs: EMAIL_LOCK_IDLE_SESSION_MS }),
    );
    // RFC 5321 §4.5.3.2: a client waits at most 10 minutes, for the answer to the final "."
    expect(EMAIL_LOCK_IDLE_SESSION_MS).toBeGreaterThan(10 * 60_000);
    // not taken again after a cut: the sender needs its lock's continuity (advisory-lock-session.ts)
    expect(jest.mocked(AdvisoryLockSession).mock.calls[0][1]).not.toHaveProperty('retakeLostHolds');
  });
});
