import {
  EMAIL_BACKOFF,
  EMAIL_JOB_OPTIONS,
  UNANSWERED_HANDOVER_RETRY_MS,
  emailBackoff,
  emailJobId,
  emailKey,
} from './email-job';
import { UnansweredHandoverError } from './mail-transport';

describe('email job ids', () => {
  const orderId = '0c8e4f2a-1111-4222-8333-944445555666';

  it('are deterministic per (order, kind) and per refund for refunds', () => {
    expect(emailJobId({ orderId, kind: 'payment_receipt' })).toBe(
      `email.${orderId}.payment_receipt`,
    );
    expect(emailJobId({ orderId, kind: 'refund', refundId: 'r1' })).toBe(
      `email.${orderId}.refund.r1`,
    );
    expect(emailJobId({ orderId, kind: 'refund', refundId: 'r1' })).not.toBe(
      emailJobId({ orderId, kind: 'refund', refundId: 'r2' }),
    );
  });

  it('ignore a refund id on kinds that are sent once per order', () => {
    expect(emailKey({ orderId, kind: 'cancellation', refundId: 'r1' })).toBe(
      `${orderId}.cancellation`,
    );
  });

  it('contain no colon (BullMQ refuses custom ids with one)', () => {
    expect(emailJobId({ orderId, kind: 'refund', refundId: 'r1' })).not.toContain(':');
  });
});

describe('email job retries', () => {
  it('outlast a mail server down for a day: delays double from 2 s, capped at 30 min', () => {
    const { attempts, backoff } = EMAIL_JOB_OPTIONS;
    expect(backoff).toEqual({ type: EMAIL_BACKOFF });
    const delays = Array.from({ length: attempts! - 1 }, (_, i) =>
      emailBackoff(i + 1, EMAIL_BACKOFF),
    );
    expect(delays.slice(0, 3)).toEqual([2_000, 4_000, 8_000]);
    expect(Math.max(...delays)).toBe(30 * 60_000);
    expect(delays.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(24 * 3_600_000);
  });

  it('wait out the incident after a message handed over whole with no answer: its one resend must not be lost in the same blip', () => {
    const unanswered = new UnansweredHandoverError('email k attempt 1 failed: handed over whole');
    expect(UNANSWERED_HANDOVER_RETRY_MS).toBeGreaterThanOrEqual(10 * 60_000);
    expect(emailBackoff(1, EMAIL_BACKOFF, unanswered)).toBe(UNANSWERED_HANDOVER_RETRY_MS);
    expect(emailBackoff(1, EMAIL_BACKOFF, new Error('ECONNREFUSED'))).toBe(2_000);
    // later in the schedule, the longer of the two
    expect(emailBackoff(40, EMAIL_BACKOFF, unanswered)).toBe(30 * 60_000);
  });
});
