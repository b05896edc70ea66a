import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { randomUUID } from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { ErrorCode } from '../errors/error-codes';
import { RequestValidationError, problemBody, sendProblem } from '../errors/problem-details.filter';

/** Deepest JSON body accepted; request DTOs nest 3 levels, Stripe events about 10. */
const MAX_BODY_DEPTH = 32;

/** Whether `value` nests objects/arrays deeper than `max` levels (iterative: no recursion). */
function nestsDeeperThan(value: unknown, max: number): boolean {
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

/**
 * Node's own refusals, before there is a request at all (headers or URL over the 16 KB limit →
 * 431, an unparsable request → 400, a client too slow to send it → 408): problem+json with a
 * fresh request id, then the connection is closed. Passed as the adapter's `clientErrorHandler`.
 */
export function clientErrorHandler(err: NodeJS.ErrnoException, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const [status, code, detail]: [number, ErrorCode, string] =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? [431, 'HEADERS_TOO_LARGE', 'The request line or headers are too large.']
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [408, 'REQUEST_TIMEOUT', 'The request was not received in time.']
        : [400, 'BAD_REQUEST', 'The request is malformed.'];
  const requestId = randomUUID();
  const body = JSON.stringify(problemBody({ status, code, detail }, requestId));
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\n` +
        `Content-Type: application/problem+json; charset=utf-8\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\nX-Request-Id: ${requestId}\r\n` +
        `Connection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy(err);
}
