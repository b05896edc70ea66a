import { REDACTED_PATHS } from './redaction';

/** How many causes deep an error's line follows its `cause` chain (the rest is cut). */
const CAUSE_DEPTH = 3;
/** The longest message a cause keeps (its own error's message is kept whole, as its stack is). */
const CAUSE_MESSAGE_LIMIT = 500;

/** How many of an AggregateError's errors its line names (each by type, message and code). */
const AGGREGATED_NAMED = 5;

/**
 * Where a system error happened — the call, the address and port (`connect ECONNREFUSED
 * 127.0.0.1:5432`) — and an HTTP exception's status: what on-call needs, never a value of a
 * request. Kept when a primitive.
 */
const PLACE_FIELDS = ['errno', 'syscall', 'address', 'port', 'status'] as const;

/** What a log line keeps of an error: never the properties a library hung on it. */
interface LoggedError extends LoggedCause {
  stack?: string;
}

interface LoggedCause {
  type: string;
  message: string;
  code?: string | number;
  cause?: LoggedCause;
  /** An AggregateError's errors (Node's connect to every address of a name: each failed). */
  errors?: LoggedCause[];
  [place: string]: unknown;
}

type ErrorLike = { message: string; name?: unknown; stack?: unknown; code?: unknown };

const isErrorLike = (value: unknown): value is ErrorLike =>
  typeof value === 'object' && value !== null && typeof (value as ErrorLike).message === 'string';

/** The constructor's name, as pino's own serializer names it (`QueryFailedError`, not `Error`). */
function typeOf(err: ErrorLike): string {
  const ctor = (err as { constructor?: { name?: unknown } }).constructor;
  if (typeof ctor?.name === 'string' && ctor.name !== '') return ctor.name;
  return typeof err.name === 'string' ? err.name : 'Error';
}

function codeOf(err: ErrorLike): { code?: string | number } {
  return typeof err.code === 'string' || typeof err.code === 'number' ? { code: err.code } : {};
}

/** The error's PLACE_FIELDS that are primitives. */
function placeOf(err: ErrorLike): Record<string, string | number> {
  const place: Record<string, string | number> = {};
  for (const field of PLACE_FIELDS) {
    const value = (err as Record<string, unknown>)[field];
    if (typeof value === 'string' || typeof value === 'number') place[field] = value;
  }
  return place;
}

/** An error below the one logged (a cause, an aggregated one): bounded, without its stack. */
function nestedOf(err: ErrorLike, depth: number): LoggedCause {
  const message =
    err.message.length > CAUSE_MESSAGE_LIMIT
      ? `${err.message.slice(0, CAUSE_MESSAGE_LIMIT)}…`
      : err.message;
  return {
    type: typeOf(err),
    message,
    ...codeOf(err),
    ...placeOf(err),
    ...causeOf(err, depth + 1),
    ...errorsOf(err, depth + 1),
  };
}

function causeOf(err: ErrorLike, depth: number): { cause?: LoggedCause } {
  const cause = (err as { cause?: unknown }).cause;
  if (depth >= CAUSE_DEPTH || !isErrorLike(cause) || cause === err) return {};
  return { cause: nestedOf(cause, depth) };
}

/**
 * An AggregateError's errors, the first AGGREGATED_NAMED: its own message is often empty (Node's
 * connect to a name whose every address refused), the addresses tried are in them (review).
 */
function errorsOf(err: ErrorLike, depth: number): { errors?: LoggedCause[] } {
  // (an AggregateError's only: another error's `errors` may be anything — a validation's
  // issues quoting the values they refused)
  if (depth >= CAUSE_DEPTH || !(err instanceof AggregateError)) return {};
  const errors: unknown[] = Array.isArray(err.errors) ? err.errors : [];
  const named = errors
    .slice(0, AGGREGATED_NAMED)
    .filter((e): e is ErrorLike => isErrorLike(e) && e !== err)
    .map((e) => nestedOf(e, depth));
  return named.length > 0 ? { errors: named } : {};
}

/**
 * pino's `err` serializer, for every logger of the process (LoggingModule's, the boot logger,
 * the crash line): an error's type, message, stack and code, where it happened (PLACE_FIELDS),
 * its causes and an AggregateError's errors by the same but their stacks (CAUSE_DEPTH deep) —
 * nothing else; an object that is no error, by its type. pino's own serializer copied every enumerable
 * property: a TypeORM QueryFailedError whose driver error had no SQLSTATE (so the filter could not
 * summarise it) was logged with its `query`, `parameters` (a password hash, an email) and
 * `driverError`. A thrown string or number is logged as it is.
 *
 * Called by pino-http with pino's own serialization of the error (its `raw` the error itself),
 * and by a plain pino logger with the error: either is read from the error.
 */
export function serializeError(value: unknown): unknown {
  const raw = (value as { raw?: unknown } | null | undefined)?.raw;
  const err = isErrorLike(raw) ? raw : value;
  if (!isErrorLike(err))
    // (an object that is no error: by its type only, its properties are no safer than an error's)
    return typeof err === 'object' && err !== null ? { type: typeOf(err as ErrorLike) } : err;
  return {
    type: typeOf(err),
    message: err.message,
    ...(typeof err.stack === 'string' ? { stack: err.stack } : {}),
    ...codeOf(err),
    ...placeOf(err),
    ...causeOf(err, 0),
    ...errorsOf(err, 0),
  } satisfies LoggedError;
}

/**
 * The options every pino logger of the process is made with: its errors through serializeError,
 * the REDACTED_PATHS censored.
 */
export const LOG_OPTIONS = {
  serializers: { err: serializeError },
  redact: { paths: REDACTED_PATHS, censor: '[REDACTED]' },
};
