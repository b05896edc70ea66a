import { Logger } from '@nestjs/common';
import { DomainError } from '../errors/domain-error';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { receivingRequest, resolveRequestId } from './request-id';
import { type IncomingMessage, STATUS_CODES, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { ErrorCode } from '../errors/error-codes';
import { RequestValidationError, problemBody, sendProblem } from '../errors/problem-details.filter';
import {
  type BrowserHeaders,
  earlyBrowserHeaders,
  rawCorsHeaders,
  securityHeaders,
} from './browser-security';
import { headerLines } from './header-lines';
import { MAX_ORDER_LINES } from '../order-lines';
import { Transform } from 'node:stream';
import { InFlightBodies } from './in-flight-bodies';
import { ipTracker } from '../throttling/rate-limit.policies';

/** Connections whose current request was answered before its body had fully arrived. */
const answeredEarly = new WeakSet<Socket>();

/** Deepest JSON body accepted; request DTOs nest 3 levels, Stripe events about 10. */
const MAX_BODY_DEPTH = 32;

/** How wide a JSON body may be: properties of one object or elements of one array, values in all. */
interface BodyWidth {
  width: number;
  nodes: number;
}
/** The webhooks: a provider's events (a Stripe event's metadata, a storage notification's records). */
const WEBHOOK_BODY_WIDTH: BodyWidth = { width: 1_000, nodes: 10_000 };
/**
 * The API's own routes: their widest body is an order of MAX_ORDER_LINES (100) lines, ~300
 * values; twice that is still the DTO's to refuse, with its own message. Wider was the DTOs' to
 * refuse after class-transformer and class-validator had walked it all: a 1,000-line order took
 * ~40 ms of this process's CPU (every other request waiting) for its 400, one free account at
 * the per-IP rate a fifth of a core (cost review).
 */
const API_BODY_WIDTH: BodyWidth = { width: 2 * MAX_ORDER_LINES, nodes: 2_000 };

/**
 * Body size limits: the API's own routes take at most 128 KB — their largest valid body, a
 * product with a description of 10,000 characters, is ~40 KB in UTF-8 but ~123 KB sent
 * \u-escaped as JSON encoders do by default (12 bytes a character outside the BMP: a surrogate
 * pair) — so a body the DTO and OpenAPI accept is never a 413; the webhooks take a provider's
 * events, up to 1 MB.
 */
export const API_BODY_LIMIT = 128 * 1024;
export const WEBHOOK_BODY_LIMIT = 1024 * 1024;
const WEBHOOK_ROUTES = '/v1/webhooks/';

/** What makes a body too deep or too wide, if anything (iterative: no recursion). */
function shapeProblem(value: unknown, { width, nodes: maxNodes }: BodyWidth): string | null {
  const stack: [unknown, number][] = [[value, 1]];
  let nodes = 0;
  while (stack.length > 0) {
    const [current, depth] = stack.pop()!;
    if (typeof current !== 'object' || current === null) continue;
    if (depth > MAX_BODY_DEPTH) return `body must not nest deeper than ${MAX_BODY_DEPTH} levels`;
    const children = Object.values(current);
    if (children.length > width) {
      return `body must not hold more than ${width} elements or properties in one array or object`;
    }
    nodes += children.length;
    if (nodes > maxNodes) return `body must not hold more than ${maxNodes} values`;
    for (const child of children) {
      if (typeof child === 'object' && child !== null) stack.push([child, depth + 1]);
    }
  }
  return null;
}

/** The `charset` parameters of a Content-Type, quoted or not. */
const CHARSET = /;\s*charset\s*=\s*("?)([^";\s]+)\1/gi;
/** Refuses bytes that are not UTF-8 instead of replacing them. */
const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });

/**
 * Bodies, before anything reads them:
 * - JSON only (API.md: JSON in). Nest would also parse form bodies and Fastify plain text — a form
 *   POST needs no CORS preflight, so any web page could send the API credentials (a sign-in with a
 *   wrong password counts against its owner); anything else is 415.
 * - 128 KB on the API's own routes, 1 MB on the webhooks (413); bodies still arriving hold at most
 *   1 MB per client and 32 MB in all in a process (countedBody: 429 / 503).
 * - An empty JSON body (whitespace at most) is no body, as when no Content-Type comes with it.
 * - A JSON body nested deeper than 32 levels, or wider than 200 properties or elements in one
 *   object or array, or 2,000 values in all (on the webhooks 1,000 and 10,000), is a 400: parsing is iterative and fast, but the
 *   walks after it (class-transformer's, quadratic in an object's width; the validation errors;
 *   the idempotency fingerprint) would take seconds of this process's CPU, or overflow the stack.
 * Called before the app initialises (Nest then registers no parsers of its own).
 */
export function limitBodies(app: NestFastifyApplication): void {
  const fastify = app.getHttpAdapter().getInstance();
  const json = fastify.getDefaultJsonParser('error', 'error');
  // (the parser's own limit is what a request no route matched is read up to: a 404 read and
  // parsed a megabyte of JSON; the webhooks' routes get theirs below)
  app.useBodyParser('application/json', { bodyLimit: API_BODY_LIMIT }, (request, body, done) => {
    // a compressed body is not read (no decompression, so no decompression bomb either): named
    // as what it is, an unsupported coding (RFC 9110 8.4), not as bytes that are not UTF-8
    const coding = request.headers['content-encoding']?.trim().toLowerCase();
    if (coding !== undefined && coding !== '' && coding !== 'identity') {
      done(
        new DomainError(
          'UNSUPPORTED_MEDIA_TYPE',
          'Request bodies are not compressed: send them without Content-Encoding.',
        ),
        undefined,
      );
      return;
    }
    // JSON is UTF-8 (RFC 8259): another charset would be read as UTF-8 and its letters replaced
    // with U+FFFD — stored, and different from what was sent — so it is refused, as are bytes
    // that are not UTF-8 at all
    // — each one named: `charset=utf-8; charset=iso-8859-1` is a Latin-1 body to whoever reads the
    // last, and a parameter named twice is an error (RFC 6838 4.3); only the first was read, and
    // its Latin-1 letters were answered as bytes that are not UTF-8 (400), not as the charset
    const charsets = String(request.headers['content-type'] ?? '').matchAll(CHARSET);
    // (US-ASCII is a part of UTF-8: such a body reads the same; the decode below holds it to that)
    if ([...charsets].some(([, , charset]) => !/^(utf-?8|us-ascii|ascii)$/i.test(charset))) {
      done(
        new DomainError(
          'UNSUPPORTED_MEDIA_TYPE',
          'JSON bodies are UTF-8: send charset=utf-8 or none.',
        ),
        undefined,
      );
      return;
    }
    let text: string;
    try {
      text = UTF8.decode(body);
    } catch {
      done(new DomainError('BAD_REQUEST', 'The request body is not valid UTF-8.'), undefined);
      return;
    }
    // no body at all, though typed JSON (generated clients send their operation's Content-Type
    // whatever they send): as without the header, where a route's body is optional (a cart
    // checkout, a refund of the rest) — Fastify's parser refused it 400, so such a client could
    // never leave the body out
    if (/^[ \t\n\r]*$/.test(text)) {
      done(null, undefined);
      return;
    }
    void json(request as FastifyRequest, text, done);
  });
  fastify.removeContentTypeParser('text/plain');
  // the bytes of bodies still arriving, per client and in all (the Stripe webhook counts its own)
  const arriving = new InFlightBodies(API_BODY_BYTES_PER_CLIENT, API_BODY_BYTES_IN_ALL);
  fastify.addHook('preParsing', (request, reply, payload, done) => {
    if (
      !bodyAnnounced(request) ||
      request.routeOptions.url === STRIPE_WEBHOOK_ROUTE ||
      // a client gone before its body is parsed (a checkout's, read first by the sold-out fast
      // path, cut short) has no address left and nothing more arrives: there is nothing to hold
      (request.ip as string | undefined) === undefined
    ) {
      return done(null, payload);
    }
    done(null, countedBody(request, reply, payload, arriving));
  });
  fastify.addHook('onResponse', (request, _reply, done) => {
    const { raw } = request;
    if (!raw.complete && raw.socket) {
      // until its body has arrived (Node reads and drops the rest): a later request's own
      // refusal on this connection is answered as usual
      const socket = raw.socket;
      answeredEarly.add(socket);
      raw.once('end', () => answeredEarly.delete(socket));
    }
    done();
  });
  fastify.addHook('onRoute', (route) => {
    route.bodyLimit ??= route.url.startsWith(WEBHOOK_ROUTES) ? WEBHOOK_BODY_LIMIT : API_BODY_LIMIT;
  });
  fastify.addHook('preValidation', async (request) => {
    const width = request.routeOptions.url?.startsWith(WEBHOOK_ROUTES)
      ? WEBHOOK_BODY_WIDTH
      : API_BODY_WIDTH;
    const problem = typeof request.body === 'object' ? shapeProblem(request.body, width) : null;
    if (problem) throw new RequestValidationError([{ field: 'body', message: problem }]);
  });
}

/** Bytes of bodies still arriving that one client may have in this process's memory at once. */
const API_BODY_BYTES_PER_CLIENT = 1024 * 1024;
/** … and all clients together. */
const API_BODY_BYTES_IN_ALL = 32 * 1024 * 1024;
/** Its own body accounting (payments/webhook-precheck.ts: read for its signature first). */
const STRIPE_WEBHOOK_ROUTE = '/v1/webhooks/stripe';

/**
 * The body as it arrives, its bytes held against the client's share of `arriving` until it has
 * all come (it is parsed at once) or the connection has gone. Past a share, 429 (the client's) or
 * 503 (everyone's) with Retry-After, and the connection closed after the answer: 800 connections
 * from one address, each sending all but the last byte of a 128 KB body, had held ~100 MB of the
 * API's memory until the request timeout (30 s), with no bound per client or in all (cost review).
 */
function countedBody(
  request: FastifyRequest,
  reply: FastifyReply,
  payload: NodeJS.ReadableStream,
  arriving: InFlightBodies,
): Transform {
  const client = ipTracker(request.ip);
  let held = 0;
  let ended = false;
  // once: the body has all come, the answer has gone out (read or not: a GET's body, a 413 by
  // its Content-Length, a 415 are answered unread, and their bytes were held for good), or the
  // connection has; what still comes after it is no longer counted
  const release = () => {
    if (ended) return;
    ended = true;
    arriving.give(client, held);
    held = 0;
  };
  request.raw.once('close', release);
  reply.raw.once('close', () => {
    release();
    // answered with its body still coming (unread: a GET's, a 415): read and dropped, as Node
    // does with a body nobody took — piped here, it counts as taken, and the next request on the
    // connection waited behind it until the request timeout, its buffers held (diff review 2)
    if (!request.raw.complete) {
      payload.unpipe(counted);
      (payload as NodeJS.ReadableStream & { resume(): void }).resume();
    }
  });
  const counted = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      if (ended) return callback(null, chunk);
      const over = arriving.take(client, chunk.length);
      if (over) {
        release();
        closeIfBodyPending(request, reply);
        // (Fastify's body reader answers an error with its statusCode)
        callback(Object.assign(over, { statusCode: over.status }));
        return;
      }
      held += chunk.length;
      callback(null, chunk);
    },
    flush(callback) {
      release();
      callback();
    },
  });
  // the body reader, when one reads, hears a refusal through its own listener; a body nobody
  // reads (answered first) must not throw it as an unhandled 'error' — that ended the process
  counted.on('error', () => undefined);
  // a client gone mid-body: the reader sees the error, as it would on the request itself
  payload.once('error', (err: Error) => counted.destroy(err));
  payload.pipe(counted);
  return counted;
}

/**
 * For an answer given before the request's body was read (a 405, a webhook refused on its
 * headers): a body still to come closes the connection after the answer — Node would otherwise
 * read and drop it to reuse the connection, however large it says it is (a 2 GB upload was
 * drained at a gigabyte every few seconds until the request timeout, on every such connection).
 */
export function closeIfBodyPending(request: FastifyRequest, reply: FastifyReply): void {
  if (bodyAnnounced(request) && !request.raw.complete) void reply.header('Connection', 'close');
}

/** Whether the request says a body comes with it (a chunked one, or a Content-Length above 0). */
function bodyAnnounced(request: FastifyRequest): boolean {
  const { headers } = request.raw;
  return headers['transfer-encoding'] !== undefined || Number(headers['content-length'] ?? 0) > 0;
}

/**
 * The target Fastify routes (its `rewriteUrl` option): the asterisk-form of `OPTIONS * HTTP/1.1`
 * (RFC 9112 3.2.4) as `/*`. Its routers match paths only, and `*` fell through both to Fastify's
 * last-resort 404 — no request hook ran (no X-Request-Id, no security headers: API.md says every
 * answer carries the id) and it logged two warnings per request, one the 404 router's whole tree.
 * Routed, it is an OPTIONS that is not a CORS preflight: 400 as any other.
 */
export function routableTarget(req: { url?: string }): string {
  return req.url === '*' ? '/*' : (req.url ?? '/');
}

/**
 * Fastify's own refusals before routing (a path parameter over maxParamLength → 414, a
 * malformed percent-encoding → 400) as problem+json with the request id, the security headers
 * and CORS's (a browser app reads the problem), like every other error.
 * Passed as the adapter's `frameworkErrors` option.
 */
export function frameworkErrors(error: Error, request: FastifyRequest, reply: FastifyReply): void {
  earlyBrowserHeaders(request, reply);
  void reply.header('X-Request-Id', request.id);
  sendProblem(error, request, reply);
}

/**
 * RFC 3986's host (a reg-name, an IPv4 address, or a bracketed IP literal — an IPv6 address with
 * a zone, RFC 6874, or an IPvFuture) and an optional port.
 */
const HOST_VALUE =
  /^(?:\[[A-Za-z0-9\-._~!$&'()*+,;=:%]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(?::[0-9]*)?$/;

/**
 * The most header lines a request may carry (the server's `maxHeadersCount`): Node keeps that
 * many and drops the rest unseen, so a request that reaches it is refused (431) — none of its
 * lines may go unread. Browsers and clients send a few dozen.
 */
export const MAX_HEADER_LINES = 256;

/** What is wrong with the request's headers (Host, Authorization, the body's), if anything. */
function headerProblem(request: FastifyRequest): DomainError | null {
  const bad = (detail: string) => new DomainError('BAD_REQUEST', detail);
  const raw = request.raw.rawHeaders;
  if (raw.length >= 2 * MAX_HEADER_LINES)
    return new DomainError(
      'HEADERS_TOO_LARGE',
      `A request may carry at most ${MAX_HEADER_LINES - 1} header lines.`,
    );
  // HTTP/1.0 and 1.1 only: Node's parser takes an `HTTP/2.0` request line, served as 1.1
  if (request.raw.httpVersionMajor !== 1)
    return bad('Only HTTP/1.0 and HTTP/1.1 are spoken on this port.');
  // (whatever the HTTP version: an HTTP/1.0 request may leave out its Host, not these)
  if (request.headers.authorization !== undefined && headerLines(raw, 'authorization') > 1)
    return bad('A request must carry one Authorization header, not several.');
  // one Content-Type (RFC 9110 §8.3: a single media type): Node kept the first of two, a
  // gateway that reads the last would judge another body
  if (headerLines(raw, 'content-type') > 1)
    return bad('A request must carry one Content-Type header, not several.');
  // Node's parser decodes `chunked` and passes any other transfer coding through as if it were
  // none (`gzip, chunked` read as plain chunked): a body an intermediary would decode reads
  // differently here, so only `chunked` itself is taken (RFC 9112 §6.1)
  const coding = request.headers['transfer-encoding'];
  if (coding !== undefined && coding.trim().toLowerCase() !== 'chunked')
    return bad('The only transfer coding taken is chunked.');
  const { host } = request.headers;
  if (host === undefined)
    return request.raw.httpVersion === '1.0'
      ? null
      : bad('An HTTP/1.1 request must carry a Host header.');
  if (headerLines(raw, 'host') > 1)
    return bad('A request must carry one Host header, not several.');
  if (!HOST_VALUE.test(host)) return bad('The Host header is not a host name or address.');
  return null;
}

/**
 * What is wrong with the query string's percent-encoding, if anything: a malformed escape (`%zz`)
 * or bytes that are not UTF-8 (`%FF`, a lone surrogate's `%ED%A0%80`) are a 400, as in the path —
 * the query parser kept them as typed, and a search looked for the literal text.
 */
function queryProblem(url: string | undefined): DomainError | null {
  const start = url?.indexOf('?') ?? -1;
  if (start < 0 || !url!.includes('%', start)) return null;
  try {
    decodeURIComponent(url!.slice(start + 1));
    return null;
  } catch {
    return new DomainError('BAD_REQUEST', 'The query string is not valid percent-encoded UTF-8.');
  }
}

/**
 * A request without a Host header (HTTP/1.1), with more than one, or with one that is no host
 * (RFC 9112 §3.2: a server MUST answer 400) is a 400 problem like any other bad request: Node's
 * own check (`requireHostHeader`, off in createFastifyAdapter) answered a missing one with an
 * empty body and no request id, and Node kept the first of two (a proxy that routed on the other
 * saw a different request than this process). So is one with two Authorization lines (RFC 9110
 * §5.3: not a list): Node kept the first, and a gateway that logs or authorizes by the last
 * would disagree with this process about who is calling; two Content-Type lines, and a transfer
 * coding other than chunked, the same for the body; and a query string that does not decode.
 * A request reaching MAX_HEADER_LINES is a 431. A first request hook (setFirstRequestHooks),
 * ahead of the others.
 */
export function refuseMalformedHead(
  request: FastifyRequest,
  reply: FastifyReply,
  done: () => void,
): void {
  const problem = headerProblem(request) ?? queryProblem(request.raw.url);
  if (problem === null) return done();
  // with CORS's headers too: a browser app reads the 400 (without them, only an opaque network
  // error) — this answer leaves before @fastify/cors's hook
  earlyBrowserHeaders(request, reply);
  void reply.header('X-Request-Id', request.id);
  sendProblem(problem, request, reply);
}

/**
 * A request that arrives while the server closes (on a connection that was busy when the close
 * began: pipelined, or its headers still in transit) is refused as a 503 problem with a request
 * id, Retry-After and `Connection: close`, instead of Fastify's own bare JSON 503
 * (`return503OnClosing`, off in createFastifyAdapter): the client retries on another instance.
 * A first request hook (setFirstRequestHooks), ahead of the others.
 */
export function refuseWhileClosing(isClosing: () => boolean, browserHeaders: BrowserHeaders) {
  return (request: FastifyRequest, reply: FastifyReply, done: () => void): void => {
    if (!isClosing()) return done();
    // with CORS's headers too: a browser client reads the 503 and its Retry-After (without them,
    // only an opaque network error) — this answer leaves before @fastify/cors's hook
    browserHeaders(reply, request.headers.origin);
    void reply.header('X-Request-Id', request.id).header('Connection', 'close');
    const closing = new DomainError(
      'SERVICE_UNAVAILABLE',
      'This instance is shutting down; retry the request.',
      {
        headers: { 'Retry-After': '1' },
      },
    );
    sendProblem(closing, request, reply);
  };
}

/**
 * An `Expect` header other than `100-continue`: 417 as problem+json with a request id (Node
 * answered a bare 417 itself). Listens to the server's `checkExpectation`.
 */
export function refuseExpectation(request: IncomingMessage, response: ServerResponse): void {
  const requestId = resolveRequestId(request.headers['x-request-id']); // a well-formed one kept, as everywhere
  const body = JSON.stringify(
    problemBody(
      {
        status: 417,
        code: 'EXPECTATION_FAILED',
        detail: 'Only "Expect: 100-continue" is supported.',
      },
      requestId,
    ),
  );
  response.writeHead(417, {
    ...securityHeaders(),
    'Content-Type': 'application/problem+json; charset=utf-8',
    'Content-Length': Buffer.byteLength(body),
    'X-Request-Id': requestId,
    Connection: 'close',
  });
  response.end(body);
}

/**
 * Node's own refusals, before there is a request at all (headers or URL over the 16 KB limit →
 * 431, an unparsable request → 400, a client too slow to send it → 408): problem+json with a
 * fresh request id — or, for a request whose body was still arriving, its own — then the
 * connection is closed. Passed as the adapter's `clientErrorHandler`.
 *
 * Answers go out in the order their requests came (RFC 9112 §9.3.2): a refused request pipelined
 * behind one still being handled is refused only once every answer due before it has gone out
 * (afterEarlierAnswers). It was written at once, where the earlier request's answer was due, and
 * the connection closed: a restock or cart change that had committed was answered 400 or 431 —
 * "nothing done" — and a client that then sent it again without a key did it twice.
 */
export function clientErrorHandler(err: NodeJS.ErrnoException, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed || refusing.has(socket)) return;
  refusing.add(socket);
  const [status, code, detail]: [number, ErrorCode, string] =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? [431, 'HEADERS_TOO_LARGE', 'The request line or headers are too large.']
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [408, 'REQUEST_TIMEOUT', 'The request was not received in time.']
        : [400, 'BAD_REQUEST', 'The request is malformed.'];
  // the id of the request whose body was still arriving (its headers gave it one, which its log
  // lines carry), else a new one: no headers were read
  const receiving = receivingRequest(socket);
  // (a body too slow: the server's own 408, no client giving up — not counted as an abort)
  if (receiving && err.code === 'ERR_HTTP_REQUEST_TIMEOUT') serverAnswered.add(receiving);
  // the request refused is the one being received (its body too slow): the rest of its body may
  // still come while earlier answers are due, and it must not be run then (holdRefusedRequest)
  if (receiving) afterRefusal.add(receiving);
  afterEarlierAnswers(socket, receiving, () => {
    // the request that timed out was already answered (refused while its body still trickled
    // in): one answer per request, so the connection is only closed
    if (!answeredEarly.has(socket)) {
      // CORS's headers too, so a browser app reads the problem (a pasted search past 16 KB, an
      // upload too slow): for the Origin of the request being received, else for none (CORS_ORIGINS
      // '*' allows any; a list needs the Origin, which an overflow of headers never gave)
      const cors = rawCorsHeaders(
        (socket as Socket & { server?: object }).server,
        receiving?.headers.origin,
      );
      writeRawProblem(
        socket,
        status,
        code,
        detail,
        receiving?.id ?? resolveRequestId(undefined),
        cors,
      );
    }
    socket.destroy(err);
  });
}

/** Connections whose refusal is decided (written, or waiting for earlier answers): once each. */
const refusing = new WeakSet<Socket>();
/**
 * Requests a connection's refusal is about or came after (read once it was decided): held, never
 * run.
 */
const afterRefusal = new WeakSet<IncomingMessage>();

/** Requests whose answer the server writes raw (a 408) or withholds (held): no client's abort. */
const serverAnswered = new WeakSet<IncomingMessage>();

/**
 * Whether the server refused `request` itself — a 408 for a body too slow, written raw on the
 * connection, or held, never answered, behind a refusal — so its connection closing with its
 * reply never ended is not the client giving up (watchAbortedRequests; a client that hung up
 * mid-body reaches clientErrorHandler too, and is counted).
 */
export function refusedByServer(request: IncomingMessage): boolean {
  return serverAnswered.has(request);
}

/**
 * The request a refusal is about, when it is the one whose body was still arriving (a 408), is
 * held before its handler: its headers went through the request hooks before the refusal, and
 * the rest of its body, once it came, had it run and answered 200 (a cart change committed), the
 * 408 after it. A `preHandler` hook.
 */
export function holdRefusedRequest(
  request: FastifyRequest,
  reply: FastifyReply,
  done: () => void,
): void {
  if (!afterRefusal.has(request.raw)) return done();
  hold(request, reply);
}

const heldLogger = new Logger('PipelinedRefusal');

/** Connections a held request was said of: once each (a client pipelining thousands behind one). */
const heldSaid = new WeakSet<Socket>();

/** Never answered, never run: the connection's refusal takes its place, then the connection ends. */
function hold(request: FastifyRequest, reply: FastifyReply): void {
  serverAnswered.add(request.raw);
  reply.hijack();
  if (heldSaid.has(request.raw.socket)) return;
  heldSaid.add(request.raw.socket);
  heldLogger.warn(
    `${request.method} request ${request.id} held, never run (and any after it on its connection): the connection is refused once the answers due before it are out`,
  );
}

/**
 * A request read on a connection whose refusal waits for earlier answers is never run: held,
 * unanswered, and the refusal takes its place (afterEarlierAnswers). A 408 leaves Node's parser
 * reading — only a parse error stops it — and the rest of a request refused for its slowness, once
 * it came, was run and answered (a cart change committed), the 408 written after it as the answer
 * to whatever came next. The first request hook (setFirstRequestHooks), ahead of the others.
 */
export function holdAfterRefusal(
  request: FastifyRequest,
  reply: FastifyReply,
  done: () => void,
): void {
  if (!refusing.has(request.raw.socket)) return done();
  afterRefusal.add(request.raw);
  hold(request, reply);
}

/**
 * Runs `then` once no answer to a request before `refused` (the request being refused, or
 * undefined: one whose headers never came, after every request read before the refusal) is still
 * due on the connection: Node hands a connection's queued answers to it one at a time (`_httpMessage`, as
 * its own refusal of a client error checks), the next as the one before is done (`close`).
 */
function afterEarlierAnswers(
  socket: Socket,
  refused: IncomingMessage | undefined,
  then: () => void,
): void {
  const due = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage;
  if (!due || due.req === refused || afterRefusal.has(due.req) || socket.destroyed) return then();
  due.once('close', () => setImmediate(() => afterEarlierAnswers(socket, refused, then)));
}

/** Connections handed over for a CONNECT, not ended yet (refuseConnect). */
const tunnelsWaiting = new Set<Socket>();

/** Ends the connections of CONNECT requests still waiting to be refused (the shutdown's cut). */
export function endWaitingTunnels(): void {
  for (const socket of tunnelsWaiting) socket.destroy();
}

/**
 * A `CONNECT` request (a proxy tunnel): 405 as problem+json with a request id, then the
 * connection is closed. Node hands CONNECT to the server's `connect` event, never to a route:
 * with no listener it destroyed the socket without an answer. Its `Allow` (a 405 MUST carry one:
 * RFC 9110 §15.5.6) names the methods the target's path has, as every other 405's does
 * (`allowedMethods`: answerMethodNotAllowed's); empty for a target no route has — a host and
 * port, the tunnel asked for: no method is allowed there (§10.2.1).
 */
export function refuseConnect(
  allowedMethods: (url: string) => readonly string[],
  maxWaitMs: number,
) {
  return (request: IncomingMessage, socket: Socket): void => {
    // Node took its own error listener off the socket before handing it over: a client that
    // resets the connection would otherwise raise an uncaught 'error' and end the process
    socket.on('error', () => socket.destroy());
    // and its timeout and parser: neither the socket timeout nor the shutdown's cut
    // (closeAllConnections) reaches it any more — while it waits for the answers due before it
    // (a client that never reads a large one), it is ended after `maxWaitMs`, or at the cut
    // (endWaitingTunnels)
    tunnelsWaiting.add(socket);
    const limit = setTimeout(() => socket.destroy(), maxWaitMs).unref();
    socket.once('close', () => {
      clearTimeout(limit);
      tunnelsWaiting.delete(socket);
    });
    // after the answers due before it, in request order: pipelined behind a write still being
    // handled, the 405 took the place of its answer (a restock that committed read as refused)
    afterEarlierAnswers(socket, undefined, () => {
      writeRawProblem(
        socket,
        405,
        'METHOD_NOT_ALLOWED',
        'CONNECT is not supported: this is not a proxy.',
        resolveRequestId(request.headers['x-request-id']), // a well-formed one kept, as everywhere
        { Allow: allowedMethods(request.url ?? '').join(', ') },
      );
      socket.destroySoon();
    });
  };
}

/**
 * Writes a problem+json answer straight to a socket that has no response object (Node's own
 * refusals), with the security headers every other answer carries (and any given, e.g. CORS's),
 * and `Connection: close`.
 */
function writeRawProblem(
  socket: Socket,
  status: number,
  code: ErrorCode,
  detail: string,
  requestId: string,
  extraHeaders: Record<string, string> = {},
): void {
  if (!socket.writable) return;
  const body = JSON.stringify(problemBody({ status, code, detail }, requestId));
  const security = Object.entries({ ...securityHeaders(), ...extraHeaders })
    .map(([name, value]) => `${name}: ${value}\r\n`)
    .join('');
  socket.write(
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\n` +
      `Content-Type: application/problem+json; charset=utf-8\r\n` +
      security +
      `Content-Length: ${Buffer.byteLength(body)}\r\nX-Request-Id: ${requestId}\r\n` +
      `Connection: close\r\n\r\n${body}`,
  );
}
