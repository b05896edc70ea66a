import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { RequestValidationError, sendProblem } from '../errors/problem-details.filter';

/** Deepest JSON body accepted; request DTOs nest 3 levels, Stripe events about 10. */
export const MAX_BODY_DEPTH = 32;

/** Whether `value` nests objects/arrays deeper than `max` levels (iterative: no recursion). */
export function nestsDeeperThan(value: unknown, max: number): boolean {
  const stack: [unknown, number][] = [[value, 1]];
  while (stack.length > 0) {
    const [current, depth] = stack.pop()!;
    if (typeof current !== 'object' || current === null) continue;
    if (depth > max) return true;
    for (const child of Object.values(current)) {
      if (typeof child === 'object' && child !== null) stack.push([child, depth + 1]);
    }
  }
  return false;
}

/**
 * A JSON body nested deeper than MAX_BODY_DEPTH is a 400 before anything else reads it: parsing
 * is iterative and safe, but the recursive walks after it (class-transformer, the idempotency
 * fingerprint) would overflow the stack and answer 500.
 */
export function limitBodyDepth(fastify: FastifyInstance): void {
  fastify.addHook('preValidation', async (request) => {
    if (typeof request.body === 'object' && nestsDeeperThan(request.body, MAX_BODY_DEPTH)) {
      throw new RequestValidationError([
        { field: 'body', message: `body must not nest deeper than ${MAX_BODY_DEPTH} levels` },
      ]);
    }
  });
}

/**
 * Fastify's own refusals before routing (a path parameter over maxParamLength → 414, a
 * malformed percent-encoding → 400) as problem+json with the request id, like every other error.
 * Passed as the adapter's `frameworkErrors` option.
 */
export function frameworkErrors(error: Error, request: FastifyRequest, reply: FastifyReply): void {
  void reply.header('X-Request-Id', request.id);
  sendProblem(error, request, reply);
}
