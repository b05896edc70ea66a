import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';

const REQUEST_ID_HEADER = 'x-request-id';
/** An incoming X-Request-Id the server keeps (openapi.json publishes it). */
export const WELL_FORMED_REQUEST_ID = /^[A-Za-z0-9._:-]{8,128}$/;

/** Keeps a well-formed incoming X-Request-Id, otherwise generates a UUID. */
export function resolveRequestId(incoming: string | string[] | undefined): string {
  const value = Array.isArray(incoming) ? incoming[0] : incoming;
  return value && WELL_FORMED_REQUEST_ID.test(value) ? value : randomUUID();
}

/**
 * Fastify's genReqId: also stores the id on the raw request so pino-http (which logs from the
 * raw request) uses the same id on every log line.
 */
export function genReqId(raw: IncomingMessage): string {
  const id = resolveRequestId(raw.headers[REQUEST_ID_HEADER]);
  (raw as IncomingMessage & { id?: string }).id = id;
  lastRequestOn.set(raw.socket, raw);
  return id;
}

/** Each connection's latest request (its headers read), for Node's own refusals of it. */
const lastRequestOn = new WeakMap<Socket, IncomingMessage>();

/**
 * The request a connection is still receiving (its headers read, its body not all
 * there: a body trickling in past the request timeout), or undefined — none yet, or the last one
 * was received whole (a refusal is then about the next request, whose headers never came).
 */
export function receivingRequest(socket: Socket): (IncomingMessage & { id?: string }) | undefined {
  const raw = lastRequestOn.get(socket) as (IncomingMessage & { id?: string }) | undefined;
  return raw && !raw.complete ? raw : undefined;
}
