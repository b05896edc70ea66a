import { LIST_HEADERS, appendListHeader } from '../http/list-header';
import { bearerToken } from '../http/bearer-token';
import { ArgumentsHost, Catch, ExceptionFilter, HttpException, Logger } from '@nestjs/common';
import { ExecutionContextHost } from '@nestjs/core/helpers/execution-context-host';
import { ThrottlerException } from '@nestjs/throttler';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { DomainError, FieldError } from './domain-error';
import { ERROR_TITLE, ErrorCode } from './error-codes';
import { databaseErrorSummary, insufficientResources, sqlStateOf } from './database-errors';
import { rememberAnsweredCode } from '../logging/command-log';
import { loggedUrl } from '../logging/logged-url';
import { requestIdField } from '../logging/request-id-field';

export interface ProblemBody {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: string;
  requestId: string;
  instance?: string;
  errors?: FieldError[];
  [extension: string]: unknown;
}

const STATUS_CODE: Record<number, ErrorCode> = {
  400: 'BAD_REQUEST',
  401: 'UNAUTHENTICATED',
  403: 'FORBIDDEN',
  404: 'ROUTE_NOT_FOUND',
  405: 'METHOD_NOT_ALLOWED',
  409: 'CONFLICT',
  413: 'PAYLOAD_TOO_LARGE',
  414: 'URI_TOO_LONG',
  415: 'UNSUPPORTED_MEDIA_TYPE',
  429: 'RATE_LIMITED',
  503: 'SERVICE_UNAVAILABLE',
};

function titleFor(code: string, fallback: string): string {
  return ERROR_TITLE[code as ErrorCode] ?? fallback;
}

function typeFor(code: string): string {
  return `https://shop.example/problems/${code.toLowerCase().replace(/_/g, '-')}`;
}

export interface Rendered {
  status: number;
  code: string;
  detail: string;
  errors?: FieldError[];
  extensions?: Record<string, unknown>;
  headers?: Record<string, string>;
}

/** Validation errors carry `errors` built by the global ValidationPipe's exceptionFactory. */
export class RequestValidationError extends DomainError {
  constructor(errors: FieldError[]) {
    super('VALIDATION_FAILED', 'One or more fields are invalid.', { errors });
  }
}

/**
 * An error raised below the HTTP layer that knows which problem it is (a payment gateway's:
 * unavailable → 503 with Retry-After, a refusal → 502) renders as that DomainError.
 */
interface KnowsItsProblem {
  toDomainError(): DomainError;
}
const knowsItsProblem = (e: unknown): e is KnowsItsProblem =>
  typeof (e as Partial<KnowsItsProblem> | null)?.toDomainError === 'function';

/** 503 with Retry-After: 1 — the database was busy, not broken, and nothing was written. */
const retryShortly = (detail: string): Rendered => ({
  status: 503,
  code: 'SERVICE_UNAVAILABLE',
  detail,
  headers: { 'Retry-After': '1' },
});

/** The problem an error is answered with; null for one answered as a bare 500 (unexpected). */
export function render(thrown: unknown): Rendered | null {
  const exception = knowsItsProblem(thrown) ? thrown.toDomainError() : thrown;
  if (exception instanceof DomainError) {
    return {
      status: exception.status,
      code: exception.code,
      detail: exception.message,
      errors: exception.options.errors,
      extensions: exception.options.extensions,
      headers: exception.options.headers,
    };
  }
  if (exception instanceof ThrottlerException) {
    return { status: 429, code: 'RATE_LIMITED', detail: 'Too many requests; retry later.' };
  }
  if (exception instanceof HttpException) {
    const status = exception.getStatus();
    const res = exception.getResponse();
    if (status === 503) {
      // e.g. the readiness check: keep its details, they tell the operator what is down
      const details = typeof res === 'object' ? (res as Record<string, unknown>) : {};
      return {
        status,
        code: 'SERVICE_UNAVAILABLE',
        detail: 'A dependency is unavailable.',
        extensions: details,
        // as every 503 the document declares: when to ask again (the probes run every few seconds)
        headers: { 'Retry-After': '5' },
      };
    }
    if (status >= 500) return null;
    const message =
      typeof res === 'string'
        ? res
        : typeof (res as { message?: unknown }).message === 'string'
          ? (res as { message: string }).message
          : exception.message;
    return { status, code: STATUS_CODE[status] ?? 'BAD_REQUEST', detail: message };
  }
  // A database refusal that validation at the edge should have caught (a value out of range,
  // a text PostgreSQL cannot store) or a constraint that a race tripped: the client's problem
  // or a conflict, never a 500.
  const sqlState = sqlStateOf(exception);
  if (sqlState === '40001' || sqlState === '40P01') {
    // a serialization failure or deadlock its transaction's retries did not get past: busy, not broken
    return retryShortly('The request collided with others running at the same time; retry it.');
  }
  if (sqlState === '57014' || sqlState === '55P03' || sqlState?.startsWith('53')) {
    // a statement cancelled (statement_timeout, an operator's pg_cancel_backend), a lock not had
    // within lock_timeout, or the server short of resources (connections, memory, disk): nothing
    // was written, the request was fine and may succeed in a moment
    return retryShortly('The database could not finish the request in time; retry it.');
  }
  if (sqlState === '25006') {
    // read_only_sql_transaction: the pool reached a standby (a failover's stale address) or a
    // server set read-only (some providers do on a full disk): nothing was written
    return retryShortly('The database accepts no writes right now; retry it.');
  }
  if (sqlState?.startsWith('54')) {
    // program_limit_exceeded: a value too large for the server to index or process
    return {
      status: 400,
      code: 'VALIDATION_FAILED',
      detail: 'A value in the request is too large.',
    };
  }
  if (sqlState?.startsWith('22') || sqlState === '23502') {
    return {
      status: 400,
      code: 'VALIDATION_FAILED',
      detail: 'A value in the request is malformed or out of range.',
    };
  }
  if (
    sqlState === '23503' &&
    /_user_id_fkey$/.test(databaseErrorSummary(exception)?.constraint ?? '')
  ) {
    // a row written for the caller's account, which is gone (an operator deleted it; no route
    // does): its access token outlived it — the caller is nobody now, as GET /v1/me says, not
    // told to reload and retry in a loop
    return { status: 401, code: 'UNAUTHENTICATED', detail: 'The account no longer exists.' };
  }
  if (sqlState?.startsWith('23')) {
    return {
      status: 409,
      code: 'CONFLICT',
      detail: 'The request conflicts with the current state; reload and retry.',
    };
  }
  // Errors raised by Fastify itself (bad JSON, body too large, wrong content type, bad URL).
  const fastifyError = exception as { statusCode?: number; code?: string; message?: string };
  if (
    typeof fastifyError?.statusCode === 'number' &&
    fastifyError.statusCode >= 400 &&
    fastifyError.statusCode < 500 &&
    typeof fastifyError.code === 'string' &&
    fastifyError.code.startsWith('FST_')
  ) {
    const status = fastifyError.statusCode;
    if (fastifyError.code === 'FST_ERR_MAX_PARAM_LENGTH') {
      return { status, code: 'URI_TOO_LONG', detail: 'A path parameter is too long.' };
    }
    if (fastifyError.code === 'FST_ERR_BAD_URL') {
      return { status, code: 'BAD_REQUEST', detail: 'The URL is malformed.' };
    }
    const detail =
      fastifyError.code === 'FST_ERR_CTP_INVALID_JSON_BODY' ||
      /JSON/.test(fastifyError.message ?? '')
        ? 'The request body is not valid JSON.'
        : (fastifyError.message ?? 'Bad request');
    return { status, code: STATUS_CODE[status] ?? 'BAD_REQUEST', detail };
  }
  // The client went away (or was cut off) while its body was still arriving: Node's `aborted`
  // (ECONNRESET), with the 400 Fastify's body reader put on it. The client's doing, not a fault
  // of ours to raise as an unhandled error (nobody reads this answer).
  if (fastifyError?.code === 'ECONNRESET' && fastifyError.statusCode === 400) {
    return {
      status: 400,
      code: 'BAD_REQUEST',
      detail: 'The request body was not received in full.',
    };
  }
  // Another plugin's refusal with its own 4xx (Swagger UI's static files: a path that is not
  // canonical, a NUL, a failed If-Match / If-Unmodified-Since, a range past the end): the
  // client's doing, answered with its status and a fixed detail (its message may name a file)
  if (
    typeof fastifyError?.statusCode === 'number' &&
    fastifyError.statusCode >= 400 &&
    fastifyError.statusCode < 500
  ) {
    const status = fastifyError.statusCode;
    return { status, code: STATUS_CODE[status] ?? 'BAD_REQUEST', detail: `${httpTitle(status)}.` };
  }
  return null;
}

/** The RFC 9457 body for a rendered error. */
export function problemBody(rendered: Rendered, requestId: string): ProblemBody {
  return {
    ...(rendered.extensions ?? {}),
    type: typeFor(rendered.code),
    title: titleFor(rendered.code, httpTitle(rendered.status)),
    status: rendered.status,
    detail: rendered.detail,
    code: rendered.code,
    requestId,
    ...(rendered.errors ? { errors: rendered.errors } : {}),
  };
}

/**
 * The one place where errors become HTTP: RFC 9457 application/problem+json with a stable
 * `code` and the request id. Anything unexpected is logged and answered as a bare 500.
 */
@Catch()
export class ProblemDetailsFilter implements ExceptionFilter {
  private readonly logger = new Logger('ProblemDetailsFilter');

  catch(exception: unknown, host: ArgumentsHost): void {
    const ctx = host.switchToHttp();
    const request = ctx.getRequest<FastifyRequest>();
    const reply = ctx.getResponse<FastifyReply>();
    const requestId = String(request?.id ?? '');

    let rendered = render(exception);
    // Database errors are logged by SQLSTATE, constraint and the statement's first words only:
    // their message, detail, statement and parameters can hold request values (hashes, tokens).
    const database = databaseErrorSummary(exception);
    if (database && rendered) {
      const fields = { database, ...requestIdField(requestId), method: request?.method };
      // A constraint answered as the generic 409: every conflict a client can cause is mapped to
      // its own code before it gets here (INSUFFICIENT_STOCK, EMAIL_TAKEN, a key in use…), so this
      // is a code path that let a race or a bug through to the database's checks (the state
      // machine's trigger, the ledger's settle-once index, a refund's reservation): nothing was
      // written, and on-call should hear of it — an error, not a warning lost among the 4xx.
      const shortOf = insufficientResources(database.sqlState);
      if (rendered.code === 'CONFLICT' && database.sqlState.startsWith('23')) {
        this.logger.error(fields, 'An integrity constraint refused a write the code let through');
      } else if (shortOf) {
        // class 53 (disk full, out of memory, too many connections): answered 503 like a lock
        // timeout, but no passing busyness — it lasts until an operator acts, so an error that
        // says what the server is short of, not a warning among the lock timeouts
        this.logger.error({ ...fields, reason: shortOf }, `Database refused a request: ${shortOf}`);
      } else {
        this.logger.warn(fields, 'Database refused a request');
      }
    }
    if (knowsItsProblem(exception) && !(exception instanceof DomainError)) {
      // an upstream's own words (the payment provider's refusal or outage) are not the client's to
      // see, but they are the operator's: the answer alone says only 502 or 503
      const cause = exception instanceof Error ? exception.message : 'no message';
      this.logger.warn(
        { ...requestIdField(requestId), method: request?.method, cause },
        'Upstream error answered as a problem',
      );
    }
    if (!rendered) {
      this.logger.error(
        {
          ...(database ? { database } : { err: exception }),
          ...requestIdField(requestId),
          method: request?.method,
          url: loggedUrl(request?.url),
        },
        'Unhandled error',
      );
      rendered = {
        status: 500,
        code: 'INTERNAL_ERROR',
        detail: `An unexpected error occurred. Quote request id ${requestId} when reporting it.`,
      };
    }

    rememberAnsweredCode(request, rendered.code);
    const body = problemBody(rendered, requestId);
    // a limit's RateLimit items add to those the guards already set for this request
    for (const [name, value] of Object.entries(rendered.headers ?? {})) {
      if (LIST_HEADERS.has(name.toLowerCase())) appendListHeader(reply, name, value);
      else void reply.header(name, value);
    }
    // a 401 names its scheme (RFC 9110 15.5.2, RFC 6750 3): clients that follow the standard
    // (and HTTP libraries that retry with credentials) need it; a bad token says so
    if (rendered.status === 401 && !reply.hasHeader('www-authenticate')) {
      // (a bearer token was sent and refused — bad, expired, revoked, its account gone — or none)
      const refusedToken =
        rendered.code === 'TOKEN_INVALID' ||
        (rendered.code === 'UNAUTHENTICATED' &&
          bearerToken(request?.headers?.authorization) !== null);
      void reply.header(
        'WWW-Authenticate',
        refusedToken ? 'Bearer error="invalid_token"' : 'Bearer',
      );
    }
    void reply.status(rendered.status).type('application/problem+json').send(body);
  }
}

function httpTitle(status: number): string {
  const titles: Record<number, string> = {
    400: 'Bad request',
    401: 'Unauthorized',
    403: 'Forbidden',
    404: 'Not found',
    405: 'Method not allowed',
    408: 'Request timeout',
    409: 'Conflict',
    412: 'Precondition failed',
    413: 'Payload too large',
    414: 'URI too long',
    415: 'Unsupported media type',
    416: 'Range not satisfiable',
    417: 'Expectation failed',
    431: 'Request header fields too large',
    422: 'Unprocessable content',
    429: 'Too many requests',
    500: 'Internal server error',
    503: 'Service unavailable',
  };
  return titles[status] ?? 'Error';
}

const filter = new ProblemDetailsFilter();

/**
 * Renders `error` exactly as the global filter does, from code that runs outside Nest's
 * pipeline (Fastify hooks and framework errors).
 */
export function sendProblem(
  error: unknown,
  request: FastifyRequest,
  reply: FastifyReply,
): FastifyReply {
  filter.catch(error, new ExecutionContextHost([request, reply]));
  return reply;
}
