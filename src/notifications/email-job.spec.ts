import { emailJobId, emailKey } from './email-job';

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
