import type { Provider } from '@nestjs/common';
import type { AppConfig } from '../config/config';
import { MetricsService } from '../metrics/metrics.service';
import { MeteredGateway } from './metered.gateway';
import { PAYMENT_GATEWAY } from './payment-gateway';
import { SimulatedGateway } from './simulated.gateway';
import { StripeGateway } from './stripe.gateway';

/**
 * PAYMENT_GATEWAY as configured: Stripe when STRIPE_SECRET_KEY is set (STRIPE_API_URL may point it
 * elsewhere), otherwise the simulated one — either counted (payment_provider_calls_total) in the
 * process that calls it. PaymentsModule's, and `payments:orphans`' (PaymentOrphansModule).
 */
export function paymentGatewayProviders(config: AppConfig): Provider[] {
  const stripeKey = config.stripe.secretKey;
  return stripeKey
    ? [
        {
          provide: PAYMENT_GATEWAY,
          inject: [MetricsService],
          useFactory: (metrics: MetricsService) =>
            new MeteredGateway(new StripeGateway(stripeKey, config.stripe.apiUrl), metrics),
        },
      ]
    : [
        {
          provide: PAYMENT_GATEWAY,
          inject: [SimulatedGateway, MetricsService],
          useFactory: (simulated: SimulatedGateway, metrics: MetricsService) =>
            new MeteredGateway(simulated, metrics),
        },
        SimulatedGateway,
      ];
}
