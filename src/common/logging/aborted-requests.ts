import { Logger } from '@nestjs/common';
import type { FastifyReply, FastifyRequest, onRequestHookHandler } from 'fastify';
import { storage } from 'nestjs-pino/storage';
import { ipTracker } from '../throttling/rate-limit.policies';
import { printableForLog } from './printable';
import { refusedByServer } from '../http/request-limits';
import { RateLimitedLog } from './rate-limited-log';

/** How often one client's aborted requests are logged at most (the rest are counted). */
const ABORT_LOG_WINDOW_MS = 10_000;
/** How many clients are named within a window; past that, they share one line and its count. */
const ABORTING_CLIENTS_NAMED = 1_000;

/** Counts an aborted request (http_requests_aborted_total): by method and route template only. */
export type CountAborted = (labels: { method: string; route: string }) => void;

/**
 * A request whose connection closed before its answer was sent — the client gave up, or sent a
 * Content-Length it never filled and hung up — is counted (`count`, every one) and logged at
 * info, the first of each client (IPv6 per /64) in ABORT_LOG_WINDOW_MS at once and the rest as one
 * line at the window's end saying how many (RateLimitedLog). pino-http wrote a `request aborted`
 * line for each (accessLogLevel now leaves those to this): 3,000 aborted logins from one client in
 * 6.5 s wrote 3,000 lines, and no rate limit stopped them — the body never arrived, so no guard
 * ran — nor did any metric count them (the onResponse hook runs on an answer sent).
 *
 * An onRequest hook: the client's address is read there (once the socket is gone Fastify has
 * none to read), and the socket's close is watched for an answer not ended.
 */
export function watchAbortedRequests(
  count: CountAborted,
  cut: () => boolean = () => false,
): onRequestHookHandler {
  const logger = new Logger('Http');
  const lines = new RateLimitedLog(ABORT_LOG_WINDOW_MS, ABORTING_CLIENTS_NAMED);
  const aborted = (request: FastifyRequest, reply: FastifyReply, client: string) => {
    const route = request.routeOptions.url ?? 'unmatched';
    count({ method: request.method, route });
    const action = `${request.method} ${route}`;
    lines.write(client, `request aborted: ${action} closed before its answer was sent`, (line) =>
      // outside any request's logging context, its id named here (the socket's close runs in
      // whichever context its last write was made: with pipelining, another request's)
      storage.exit(() =>
        logger.log({
          msg: line,
          action,
          client,
          durationMs: Math.round(reply.elapsedTime * 10) / 10,
          requestId: request.id,
        }),
      ),
    );
  };
  return (request, reply, done) => {
    // (X-Forwarded-For's, behind a proxy: printable ASCII only, as every logged address)
    const client = printableForLog(ipTracker(request.ip));
    const closed = () => {
      // not the client's doing: the server's own 408, a request held behind a refusal
      // (refusedByServer), connections the server cut as it stopped (`cut`: only the cut —
      // during the shutdown delay and drain before it, clients go on aborting as ever)
      if (reply.raw.writableEnded || refusedByServer(request.raw) || cut()) return;
      aborted(request, reply, client);
    };
    // (a connection gone while an earlier hook waited: its close has been and gone already)
    if (request.raw.socket?.destroyed) closed();
    else reply.raw.once('close', closed);
    done();
  };
}
