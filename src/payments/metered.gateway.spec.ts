import { Logger } from '@nestjs/common';
import Stripe from 'stripe';
import { mockOf } from '../../test/support/mocks';
import { MetricsService } from '../metrics/metrics.service';
import { MeteredGateway, callOutcomeOf } from './metered.gateway';
import { BUDGET_SPENT, GatewayError, GatewayIntent, PaymentGateway } from './payment-gateway';
import { gatewayErrorOf } from './stripe.gateway';

const INTENT: GatewayIntent = {
  id: 'pi_1',
  clientSecret: 'pi_1_secret',
  status: 'requires_payment_method',
  amount: 100,
  currency: 'INR',
  orderId: 'o1',
};
// made up, and put together here so that no secret scanner takes it for a live key
const KEY = ['sk', 'live', '51HabcdefghijklmnopqrstuvwxyzABCDEF0123456789wxyz'].join('_');
/** What the SDK throws when Stripe refuses KEY: its message quotes it, masked. */
const refused = () =>
  gatewayErrorOf(
    new Stripe.errors.StripeAuthenticationError({
      message: `Invalid API Key provided: ${KEY.slice(0, 8)}${'*'.repeat(KEY.length - 12)}${KEY.slice(-4)}`,
      statusCode: 401,
    } as never),
  );

describe('payment_provider_calls_total (MeteredGateway)', () => {
  let errors: jest.SpyInstance;
  beforeEach(() => {
    errors = jest.spyOn(Logger.prototype, 'error').mockImplementation(() => undefined);
  });
  afterEach(() => errors.mockRestore());

  const metered = (inner: Partial<PaymentGateway>) => {
    const metrics = new MetricsService();
    const gateway = new MeteredGateway(
      mockOf<PaymentGateway>({ provider: 'stripe', ...inner }, 'gateway'),
      metrics,
    );
    const count = async (operation: string, outcome: string) =>
      Number(
        new RegExp(
          `^payment_provider_calls_total\\{operation="${operation}",outcome="${outcome}"\\} (\\d+)$`,
          'm',
        ).exec(await metrics.render())?.[1],
      );
    return { gateway, metrics, count };
  };

  it('classifies how a call ended: ok, rejected, unavailable, auth_failed, budget_spent', () => {
    expect(callOutcomeOf(new GatewayError('rejected', 'card_declined', 'no'))).toBe('rejected');
    expect(callOutcomeOf(new GatewayError('unavailable', undefined, '503'))).toBe('unavailable');
    expect(callOutcomeOf(new GatewayError('unavailable', BUDGET_SPENT, 'late'))).toBe(
      'budget_spent',
    );
    expect(callOutcomeOf(refused())).toBe('auth_failed');
    const forbidden = gatewayErrorOf(
      new Stripe.errors.StripePermissionError({ message: 'no', statusCode: 403 } as never),
    );
    expect(callOutcomeOf(forbidden)).toBe('auth_failed');
    expect(callOutcomeOf(new Error('a database blink (simulated gateway)'))).toBe('unavailable');
  });

  it('counts each call once, by operation and outcome, every series there from the start at 0', async () => {
    const { gateway, count } = metered({
      createIntent: async () => INTENT,
      retrieveIntent: async () => {
        throw new GatewayError('unavailable', undefined, 'Stripe 503');
      },
      cancelIntent: async () => {
        throw new GatewayError('unavailable', BUDGET_SPENT, 'the caller stopped waiting');
      },
      listRefunds: async () => {
        throw new GatewayError('rejected', 'resource_missing', 'no such intent');
      },
    });
    expect(await count('create_refund', 'auth_failed')).toBe(0);
    await expect(gateway.createIntent({} as never)).resolves.toBe(INTENT);
    await expect(gateway.retrieveIntent('pi_1')).rejects.toThrow('Stripe 503');
    await expect(gateway.cancelIntent('pi_1')).rejects.toThrow('the caller stopped waiting');
    await expect(gateway.listRefunds('pi_1')).rejects.toThrow('no such intent');
    expect(await count('create_intent', 'ok')).toBe(1);
    expect(await count('retrieve_intent', 'unavailable')).toBe(1);
    expect(await count('cancel_intent', 'budget_spent')).toBe(1);
    expect(await count('list_refunds', 'rejected')).toBe(1);
    expect(await count('create_intent', 'unavailable')).toBe(0);
    expect(errors).not.toHaveBeenCalled();
    expect(gateway.provider).toBe('stripe');
  });

  it("counts the listings of what the provider made, a page a call — the orphan sweep's, in the worker's registry", async () => {
    const { gateway, count } = metered({
      listIntentsMade: async () => ({ items: [], next: 'pi_2' }),
      listRefundsMade: async () => {
        throw new GatewayError('unavailable', 'rate_limit', 'Stripe 429');
      },
      listDisputesMade: async () => Promise.reject(refused()),
    });
    const made = { from: new Date(0) };
    expect(await count('list_intents_made', 'ok')).toBe(0);
    await expect(gateway.listIntentsMade(made, { limit: 1 })).resolves.toEqual({
      items: [],
      next: 'pi_2',
    });
    await expect(gateway.listIntentsMade(made, { after: 'pi_2', limit: 1 })).resolves.toBeDefined();
    await expect(gateway.listRefundsMade(made, { limit: 100 })).rejects.toThrow('Stripe 429');
    await expect(gateway.listDisputesMade(made, { limit: 100 })).rejects.toThrow();
    expect(await count('list_intents_made', 'ok')).toBe(2);
    expect(await count('list_refunds_made', 'unavailable')).toBe(1);
    expect(await count('list_disputes_made', 'auth_failed')).toBe(1);
    expect(String(errors.mock.calls[0]?.[0])).toContain('list_disputes_made');
  });

  it('a refused key: auth_failed, and an error line saying to check STRIPE_SECRET_KEY — no part of the key — once per 10 s, the rest counted', async () => {
    jest.useFakeTimers({ doNotFake: ['nextTick', 'setImmediate'] });
    try {
      const { gateway, count } = metered({
        createIntent: async () => Promise.reject(refused()),
        retrieveDispute: async () => Promise.reject(refused()),
      });
      for (let i = 0; i < 3; i++) await expect(gateway.createIntent({} as never)).rejects.toThrow();
      await expect(gateway.retrieveDispute('dp_1')).rejects.toThrow();
      expect(await count('create_intent', 'auth_failed')).toBe(3);
      expect(await count('retrieve_dispute', 'auth_failed')).toBe(1);
      expect(await count('create_intent', 'unavailable')).toBe(0);
      expect(errors).toHaveBeenCalledTimes(1);
      const line = String(errors.mock.calls[0][0]);
      expect(line).toContain('check STRIPE_SECRET_KEY');
      expect(line).toContain('create_intent');
      for (const part of [KEY, KEY.slice(0, 8), KEY.slice(-4), 'sk_', '****'])
        expect(line).not.toContain(part);
      await jest.advanceTimersByTimeAsync(10_000);
      expect(errors).toHaveBeenCalledTimes(2);
      expect(String(errors.mock.calls[1][0])).toMatch(
        /check STRIPE_SECRET_KEY.*\(3 more in 10 s\)$/,
      );
    } finally {
      jest.useRealTimers();
    }
  });
});
