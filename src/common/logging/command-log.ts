import { Logger } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { storage } from 'nestjs-pino/storage';
import { printableForLog } from './printable';

/**
 * The "command completed" line of a command (every request that is not a read) that no handler
 * ran for: refused by a guard (401 token, 403 permission, 429 limit, 400 unread input, a webhook's
 * signature or token) or by the sold-out fast path. LoggingInterceptor writes the line of every
 * command a handler ran for; Nest runs guards before interceptors, so these had none, and a
 * customer's 403 on an admin route showed in no line with who sent it. Written from the server's
 * onResponse hook (configureApp), after the answer has gone.
 */
const READS = new Set(['GET', 'HEAD', 'OPTIONS']);
const logger = new Logger('Command');
/** Requests whose line LoggingInterceptor writes. */
const handled = new WeakSet<object>();
/** The problem code each refused request was answered with (ProblemDetailsFilter). */
const answeredCodes = new WeakMap<object, string>();
/** Requests (and their raw requests, which the access log sees) that write no line: quietly(). */
const quiet = new WeakSet<object>();

/**
 * The request writes no access or command line: a rate limit's refusal past the first of its
 * window (RateLimitGuard). A client that keeps sending after its 429 was logged one line per
 * refusal — ~280 bytes a request, as fast as it could send: a disk filled by a flood. The first
 * refusal of each window is logged as before, so the flood is seen.
 */
export function quietly(request: FastifyRequest): void {
  quiet.add(request);
  quiet.add(request.raw);
}

/** Whether `request` (a Fastify request or its raw one) writes no line. */
export function isQuiet(request: object): boolean {
  return quiet.has(request);
}

type CommandRequest = FastifyRequest & { user?: { userId?: string } };

export const isCommand = (request: FastifyRequest): boolean => !READS.has(request.method);

/** LoggingInterceptor writes this request's line. */
export function markHandled(request: FastifyRequest): void {
  handled.add(request);
}

/** The code of the problem `request` is answered with. */
export function rememberAnsweredCode(request: FastifyRequest | undefined, code: string): void {
  if (request) answeredCodes.set(request, code);
}

/** One command's line: what it was, how it ended, whose it was. */
export function writeCommandLine(
  request: CommandRequest,
  outcome: { status: number; durationMs: number; error?: string; refused?: boolean },
  extra: Record<string, unknown> = {},
): void {
  logger.log({
    msg: 'command completed',
    action: `${request.method} ${request.routeOptions.url ?? request.url.split('?')[0]}`,
    status: outcome.status,
    durationMs: Math.round(outcome.durationMs * 10) / 10,
    principalId: request.user?.userId ?? null,
    ...extra,
    error: outcome.error,
    // answered before any handler ran (a guard's or the fast path's refusal)
    ...(outcome.refused ? { refused: true } : {}),
  });
}

/** onResponse: the line of a routed command no handler ran for. */
export function logRefusedCommand(request: FastifyRequest, reply: FastifyReply): void {
  if (
    !isCommand(request) ||
    handled.has(request) ||
    quiet.has(request) ||
    request.routeOptions.url === undefined
  )
    return;
  // Written outside any request's logging context, its id named here: the hook runs on the
  // answer's `finish`, in whichever context the socket's last write was made — with pipelined
  // requests, the previous request's, whose id the line would have carried.
  storage.exit(() =>
    writeCommandLine(
      request,
      {
        status: reply.statusCode,
        durationMs: reply.elapsedTime,
        error: answeredCodes.get(request),
        refused: true,
      },
      { requestId: request.id },
    ),
  );
}

const security = new Logger('Security');
const http = new Logger('Http');

const actionOf = (request: FastifyRequest) =>
  `${request.method} ${request.routeOptions.url ?? 'unmatched'}`;

/**
 * onResponse, at `warn` and below (every level but error and fatal): a 403 FORBIDDEN is a security
 * event — a signed-in caller on a route its role does not reach (a customer on an admin page,
 * reads included: every customer's orders), the queue board refusing a session: who, what and
 * from where. The access line (info) named no one, and above info there was none. A 403 of the
 * shop's rules (REVIEW_NOT_ALLOWED: a product the customer did not buy) is not one. The address
 * is printable ASCII only (printableForLog): behind a proxy trusted past its own entry,
 * X-Forwarded-For's is the client's to write.
 */
export function logDenied(request: CommandRequest, reply: FastifyReply): void {
  if (reply.statusCode !== 403 || answeredCodes.get(request) !== 'FORBIDDEN') return;
  storage.exit(() =>
    security.warn(
      {
        event: 'access_denied',
        action: actionOf(request),
        principalId: request.user?.userId ?? null,
        client: printableForLog(request.ip),
        error: answeredCodes.get(request),
        requestId: request.id,
      },
      'access_denied',
    ),
  );
}

/**
 * onResponse at `warn` (where the access log is off; not at error or fatal): a 5xx answer still
 * leaves a warn line — the access line's level for it, where alerts look — with its request id
 * and code. Below warn the access log writes it.
 */
export function logUnserved(request: FastifyRequest, reply: FastifyReply): void {
  if (reply.statusCode < 500) return;
  storage.exit(() =>
    http.warn({
      msg: 'request failed',
      action: actionOf(request),
      status: reply.statusCode,
      durationMs: Math.round(reply.elapsedTime * 10) / 10,
      error: answeredCodes.get(request),
      requestId: request.id,
    }),
  );
}
