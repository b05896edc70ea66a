import { CanActivate, ExecutionContext, Injectable } from '@nestjs/common';
import type { RawBodyRequest } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import type Stripe from 'stripe';
import { WebhooksService } from './webhooks.service';

export type StripeWebhookRequest = RawBodyRequest<FastifyRequest> & { stripeEvent?: Stripe.Event };

/**
 * Verifies the Stripe-Signature over the raw body (400 WEBHOOK_SIGNATURE_INVALID) as a guard,
 * so it runs before every interceptor: an unsigned caller never reaches the idempotency
 * interceptor's transaction, whatever headers it sends. The verified event is left on the request.
 */
@Injectable()
export class StripeSignatureGuard implements CanActivate {
  constructor(private readonly webhooks: WebhooksService) {}

  canActivate(context: ExecutionContext): boolean {
    const request = context.switchToHttp().getRequest<StripeWebhookRequest>();
    const signature = request.headers['stripe-signature'];
    request.stripeEvent = this.webhooks.verify(
      request.rawBody,
      typeof signature === 'string' ? signature : undefined,
    );
    return true;
  }
}
