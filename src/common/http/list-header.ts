import type { FastifyReply } from 'fastify';

/** Headers whose value is a list (RFC 9110 §5.3): a value set later adds an item, never replaces. */
export const LIST_HEADERS: ReadonlySet<string> = new Set(['ratelimit-policy', 'ratelimit']);

/** Adds `value` as one more item of the list header `name` (set if absent). */
export function appendListHeader(reply: FastifyReply, name: string, value: string): void {
  const existing = reply.getHeader(name);
  void reply.header(name, existing ? `${String(existing)}, ${value}` : value);
}
