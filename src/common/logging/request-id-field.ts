import { storage } from 'nestjs-pino/storage';

/**
 * `{ requestId }` for a log line — unless it is written inside the request's logging context,
 * whose logger binds the id already: the key twice in one JSON line, which strict parsers
 * (Elasticsearch's, by default) refuse, on the very lines people alert on (upstream outages,
 * database refusals, unhandled errors). Outside it (a hook that answers before the request's
 * logger exists) the line still names its request.
 */
export function requestIdField(requestId: string | undefined): { requestId?: string } {
  return requestId === undefined || storage.getStore() !== undefined ? {} : { requestId };
}
