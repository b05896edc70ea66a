import Stripe from 'stripe';
import { gatewayErrorOf, intentStatusOf, withoutKeys } from './stripe.gateway';

describe('Stripe adapter mapping', () => {
  it('folds Stripe intent statuses onto ours', () => {
    expect(intentStatusOf('succeeded')).toBe('succeeded');
    expect(intentStatusOf('canceled')).toBe('canceled');
    expect(intentStatusOf('processing')).toBe('processing');
    expect(intentStatusOf('requires_capture')).toBe('processing');
    expect(intentStatusOf('requires_action')).toBe('requires_payment_method');
    expect(intentStatusOf('requires_confirmation')).toBe('requires_payment_method');
  });

  it('a card or invalid-request answer is a rejection; conflicts, auth, 429, 5xx and network errors are unknown outcomes', () => {
    const invalid = new Stripe.errors.StripeInvalidRequestError({
      message: 'too much',
      code: 'amount_too_large',
      statusCode: 400,
    } as never);
    expect(gatewayErrorOf(invalid)).toMatchObject({ kind: 'rejected', code: 'amount_too_large' });
    const api = new Stripe.errors.StripeAPIError({ message: 'boom', statusCode: 500 } as never);
    expect(gatewayErrorOf(api).kind).toBe('unavailable');
    const limited = new Stripe.errors.StripeRateLimitError({
      message: 'slow down',
      statusCode: 429,
    } as never);
    expect(gatewayErrorOf(limited).kind).toBe('unavailable');
    const network = new Stripe.errors.StripeConnectionError({ message: 'ECONNRESET' } as never);
    expect(gatewayErrorOf(network).kind).toBe('unavailable');
    expect(gatewayErrorOf(new Error('socket hang up')).kind).toBe('unavailable');
    const twin = new Stripe.errors.StripeInvalidRequestError({
      message: 'in use',
      code: 'idempotency_key_in_use',
      statusCode: 409,
    } as never);
    expect(gatewayErrorOf(twin).kind).toBe('unavailable');
    const rotated = new Stripe.errors.StripeAuthenticationError({
      message: 'bad key',
      statusCode: 401,
    } as never);
    expect(gatewayErrorOf(rotated).kind).toBe('unavailable');
    const card = new Stripe.errors.StripeCardError({
      message: 'declined',
      code: 'card_declined',
      statusCode: 402,
    } as never);
    expect(gatewayErrorOf(card)).toMatchObject({ kind: 'rejected', code: 'card_declined' });
  });

  it('a refused key (401, 403 — by class or by status) is marked authFailed and stays an unknown outcome; nothing else is', () => {
    // made up, put together so that no secret scanner takes it for a live key
    const key = ['sk', 'live', '51Habcdefghijklmnopqrstuvwxyz0123456789wxyz'].join('_');
    const masked = `${key.slice(0, 8)}${'*'.repeat(key.length - 12)}${key.slice(-4)}`;
    const rotated = gatewayErrorOf(
      new Stripe.errors.StripeAuthenticationError({
        message: `Invalid API Key provided: ${masked}`,
        statusCode: 401,
      } as never),
    );
    expect(rotated).toMatchObject({ kind: 'unavailable', authFailed: true });
    expect(rotated.message).toBe('Invalid API Key provided: [key]');
    const restricted = gatewayErrorOf(
      new Stripe.errors.StripePermissionError({
        message: "The provided key 'rk_live_****wxyz' does not have the required permissions",
        statusCode: 403,
      } as never),
    );
    expect(restricted).toMatchObject({ kind: 'unavailable', authFailed: true });
    expect(restricted.message).not.toMatch(/rk_live|wxyz/);
    // a 401 whatever class the SDK made of it
    const byStatus = gatewayErrorOf(
      new Stripe.errors.StripeAPIError({ message: 'nope', statusCode: 401 } as never),
    );
    expect(byStatus).toMatchObject({ kind: 'unavailable', authFailed: true });
    for (const other of [
      new Stripe.errors.StripeAPIError({ message: 'boom', statusCode: 500 } as never),
      new Stripe.errors.StripeRateLimitError({ message: 'slow down', statusCode: 429 } as never),
      new Stripe.errors.StripeConnectionError({ message: 'ECONNRESET' } as never),
      new Stripe.errors.StripeCardError({
        message: 'declined',
        code: 'card_declined',
        statusCode: 402,
      } as never),
      new Error('socket hang up'),
    ])
      expect(gatewayErrorOf(other).authFailed).toBe(false);
  });

  it('withoutKeys: the keys a message quotes, whole or masked, are taken out; the rest stays', () => {
    expect(withoutKeys('Expired API Key provided: sk_test_abc*****wxyz.')).toBe(
      'Expired API Key provided: [key]',
    );
    expect(withoutKeys(`key '${['rk', 'live', 'abc'].join('_')}' lacks rak_charge_write`)).toBe(
      "key '[key]' lacks rak_charge_write",
    );
    expect(withoutKeys('No such payment_intent: pi_123')).toBe('No such payment_intent: pi_123');
  });
});
