import { SetMetadata } from '@nestjs/common';

/**
 * A read a route's handler makes first thing in its transaction, known from the request before
 * the handler runs: whoever opens the route's transaction (the idempotency interceptor) sends it
 * in BEGIN's message, and the repository that would have sent it takes its rows from the
 * transaction instead (TransactionHost.takeOpened) — one round trip less. `key` names exactly
 * what was read (e.g. the ids), so a handler asking for anything else reads as usual.
 */
export interface OpeningRead {
  key: string;
  sql: string;
  params: unknown[];
}

export const OPENING_READS = 'transaction:opening-reads';

/**
 * The opening reads of a route, from its request body as received — before validation, so the
 * function must return only reads that cannot fail on what it was given (none when in doubt:
 * the handler then reads as usual, after the validation pipe has judged the body).
 */
export type OpeningReadsOf = (body: unknown) => OpeningRead[];

export const OpeningReads = (of: OpeningReadsOf): MethodDecorator => SetMetadata(OPENING_READS, of);
