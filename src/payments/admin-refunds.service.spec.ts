import { Test } from '@nestjs/testing';
import { APP_CONFIG, loadConfig } from '../config/config';
import type { Principal } from '../auth/principal';
import { AdminRefundsService } from './admin-refunds.service';
import type { Refund } from './refund.repository';
import { RefundsService } from './refunds.service';

const ORDER = '0c8e4f2a-1111-4222-8333-944445555666';
const admin: Principal = {
  userId: 'a-1',
  email: 'admin@example.com',
  role: 'admin',
  permissions: ['orders:refund'],
};

const refund: Refund = {
  id: 'r-1',
  orderId: ORDER,
  paymentId: 'pay-1',
  amount: 10_000,
  currency: 'INR',
  status: 'succeeded',
  reason: 'requested',
  requestedRest: false,
  providerRefundId: 're_1',
  failure: null,
  requestKey: null,
  actor: 'user:a-1',
  createdAt: new Date('2026-03-01T12:00:00Z'),
  updatedAt: new Date('2026-03-01T12:00:00Z'),
};

async function setup(env: Record<string, string> = {}) {
  const refunds: jest.Mocked<Pick<RefundsService, 'request'>> = {
    request: jest.fn().mockResolvedValue(refund),
  };
  const moduleRef = await Test.createTestingModule({
    providers: [
      AdminRefundsService,
      { provide: RefundsService, useValue: refunds },
      { provide: APP_CONFIG, useValue: loadConfig({ NODE_ENV: 'development', ...env }) },
    ],
  }).compile();
  return { service: moduleRef.get(AdminRefundsService), refunds };
}

describe('AdminRefundsService', () => {
  it('refunds as the signed-in admin under their Idempotency-Key, waiting on the provider PAYMENT_START_BUDGET_MS at most, and answers with the refund', async () => {
    const s = await setup({ PAYMENT_START_BUDGET_MS: '3000' });
    const dto = await s.service.refund(
      admin,
      ORDER,
      { amount: { amount: 10_000, currency: 'INR' } },
      'key-1',
    );
    expect(s.refunds.request).toHaveBeenCalledWith({
      orderId: ORDER,
      amount: 10_000,
      currency: 'INR',
      actor: 'user:a-1',
      idempotencyKey: 'key-1',
      waitMs: 3_000,
    });
    expect(dto).toEqual({
      id: 'r-1',
      orderId: ORDER,
      amount: { amount: 10_000, currency: 'INR' },
      status: 'succeeded',
      reason: 'requested',
      createdAt: '2026-03-01T12:00:00.000Z',
    });
  });

  it("with Stripe, an amount in a three-decimal currency must end in 0 — judged in the currency asked (the order's), not the shop's today: 400 before anything is asked", async () => {
    const s = await setup({ STRIPE_SECRET_KEY: 'sk_test_abc', SHOP_CURRENCY: 'USD' });
    await expect(
      s.service.refund(admin, ORDER, { amount: { amount: 5125, currency: 'KWD' } }, 'key-1'),
    ).rejects.toMatchObject({
      code: 'VALIDATION_FAILED',
      options: { errors: [{ field: 'amount.amount', message: 'must be a multiple of 10' }] },
    });
    expect(s.refunds.request).not.toHaveBeenCalled();
    await s.service.refund(admin, ORDER, { amount: { amount: 5120, currency: 'KWD' } }, 'key-2');
    await s.service.refund(admin, ORDER, { amount: { amount: 5125, currency: 'USD' } }, 'key-3');
    expect(s.refunds.request).toHaveBeenCalledTimes(2);
  });

  it('without an amount, asks for all that remains (full refund)', async () => {
    const s = await setup();
    await s.service.refund(admin, ORDER, {}, 'key-1');
    expect(s.refunds.request).toHaveBeenCalledWith(expect.objectContaining({ amount: undefined }));
  });
});
