import { Logger } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import { storage } from 'nestjs-pino/storage';

/** What the idempotency layer made of a request's Idempotency-Key (API.md, Idempotency). */
export type IdempotencyOutcome = 'first' | 'replayed' | 'in_use' | 'mismatch';

/**
 * One line of an order's story: a JSON line at info level. `requestId` (inside a request) or
 * `jobId` (inside a job, see job-log-context.ts) and `idempotency` (once known for the request)
 * come from the logging context, not from the caller. Never put secrets here: ids, states,
 * amounts and outcomes only.
 */
export interface OrderLogLine {
  orderId: string;
  /** What happened, e.g. `transition`, `payment.converged`, `refund.applied`, `email.sent`. */
  action: string;
  from?: string | null;
  to?: string | null;
  [detail: string]: string | number | boolean | null | undefined;
}

const orderLogger = new Logger('OrderStory');

export function logOrder(line: OrderLogLine): void {
  orderLogger.log({ msg: `order ${line.action}`, ...line });
}

type WithIdempotency = FastifyRequest & { idempotency?: IdempotencyOutcome };

/**
 * Records the idempotency outcome on the request (for the command line of the logging
 * interceptor) and on the request's logger, so every later line of the request carries it.
 */
export function recordIdempotency(request: FastifyRequest, outcome: IdempotencyOutcome): void {
  if ((request as WithIdempotency).idempotency === outcome) return;
  (request as WithIdempotency).idempotency = outcome;
  const store = storage.getStore();
  if (store) store.logger = store.logger.child({ idempotency: outcome });
}

export function idempotencyOf(request: FastifyRequest): IdempotencyOutcome | undefined {
  return (request as WithIdempotency).idempotency;
}
