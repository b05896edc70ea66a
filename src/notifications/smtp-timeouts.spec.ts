import { EMAIL_BUSY_RETRIES, EMAIL_BUSY_RETRY_MS } from './email-job';
import {
  SMTP_IDLE_BEFORE_HANDOVER_MS,
  SMTP_TIMEOUTS,
  smtpTransportOptions,
} from './mail-transport';

/**
 * A reply to the message (after DATA's ".") that comes late must not be taken for a failure: the
 * server has the message, and a retry sends it again. RFC 5321 4.5.3.2.6: 10 minutes. And a twin
 * job waiting for a delivery being sent must outlast the longest conversation.
 */
describe('SMTP timeouts', () => {
  it("wait the RFC's 10 minutes for the answer to a message", () => {
    expect(SMTP_TIMEOUTS.socketTimeout).toBeGreaterThanOrEqual(10 * 60_000);
  });

  it('before the message is handed over, a minute of silence ends the conversation (the 10 minutes held each email slot behind a stalled relay)', () => {
    expect(SMTP_IDLE_BEFORE_HANDOVER_MS).toBeLessThanOrEqual(60_000);
    expect(SMTP_IDLE_BEFORE_HANDOVER_MS).toBeGreaterThanOrEqual(30_000); // a recipient callout's 30 s
  });

  it('a twin job waits out a whole conversation before it counts an attempt', () => {
    const conversation =
      SMTP_TIMEOUTS.connectionTimeout + SMTP_TIMEOUTS.greetingTimeout + SMTP_TIMEOUTS.socketTimeout;
    expect(EMAIL_BUSY_RETRIES * EMAIL_BUSY_RETRY_MS).toBeGreaterThan(conversation);
  });
});

describe('SMTP transport security', () => {
  it('requires STARTTLS of an smtp:// server outside development (a stripped offer must not send the password in clear)', () => {
    expect(smtpTransportOptions('smtp://u:p@mail.example.com:587', false)).toMatchObject({
      host: 'mail.example.com',
      requireTLS: true,
    });
  });

  it('not for smtps:// (TLS from the start), a server on this host, development, or a URL that says requireTLS=false', () => {
    expect(smtpTransportOptions('smtps://u:p@mail.example.com:465', false)).toMatchObject({
      secure: true,
      requireTLS: false,
    });
    for (const host of ['127.0.0.1', 'localhost', '[::1]']) {
      expect(smtpTransportOptions(`smtp://${host}:25`, false).requireTLS).toBe(false);
    }
    expect(smtpTransportOptions('smtp://mailpit:1025', true).requireTLS).toBe(false);
    expect(
      smtpTransportOptions('smtp://relay.internal:25?requireTLS=false', false).requireTLS,
    ).toBe(false);
  });
});
