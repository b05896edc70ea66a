import { REDACTED_PATHS } from './redaction';

/** How many causes deep an error's line follows its `cause` chain (the rest is cut). */
const CAUSE_DEPTH = 3;
/** The longest message a cause keeps (its own error's message is kept whole, as its stack is). */
const CAUSE_MESSAGE_LIMIT = 500;

/** What a log line keeps of an error: never the properties a library hung on it. */
interface LoggedError {
  type: string;
  message: string;
  stack?: string;
  code?: string | number;
  cause?: LoggedCause;
}

interface LoggedCause {
  type: string;
  message: string;
  code?: string | number;
  cause?: LoggedCause;
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

function causeOf(err: ErrorLike, depth: number): { cause?: LoggedCause } {
  const cause = (err as { cause?: unknown }).cause;
  if (depth >= CAUSE_DEPTH || !isErrorLike(cause) || cause === err) return {};
  const message =
    cause.message.length > CAUSE_MESSAGE_LIMIT
      ? `${cause.message.slice(0, CAUSE_MESSAGE_LIMIT)}…`
      : cause.message;
  return {
    cause: { type: typeOf(cause), message, ...codeOf(cause), ...causeOf(cause, depth + 1) },
  };
}

/**
 * pino's `err` serializer, for every logger of the process (LoggingModule's, the boot logger,
 * the crash line): an error's type, message, stack and code, and its causes' type, message and
 * code (CAUSE_DEPTH deep) — nothing else; an object that is no error, by its type. pino's own serializer copied every enumerable
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
    ...causeOf(err, 0),
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
