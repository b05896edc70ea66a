import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

const REQUEST_ID_HEADER = 'x-request-id';
const WELL_FORMED = /^[A-Za-z0-9._:-]{8,128}$/;

/** Keeps a well-formed incoming X-Request-Id, otherwise generates a UUID. */
export function resolveRequestId(incoming: string | string[] | undefined): string {
  const value = Array.isArray(incoming) ? incoming[0] : incoming;
  return value && WELL_FORMED.test(value) ? value : randomUUID();
}

/**
 * Fastify's genReqId: also stores the id on the raw request so pino-http (which logs from the
 * raw request) uses the same id on every log line.
 */
export function genReqId(raw: IncomingMessage): string {
  const id = resolveRequestId(raw.headers[REQUEST_ID_HEADER]);
  (raw as IncomingMessage & { id?: string }).id = id;
  return id;
}
