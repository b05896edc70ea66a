import Stripe from 'stripe';
import { gatewayErrorOf, intentStatusOf } from './stripe.gateway';

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
});
