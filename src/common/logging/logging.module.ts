import type { IncomingMessage, ServerResponse } from 'node:http';
import { Module } from '@nestjs/common';
import { APP_INTERCEPTOR } from '@nestjs/core';
import { LoggerModule, PinoLogger } from 'nestjs-pino';
import type { Options } from 'pino-http';
import { APP_CONFIG, AppConfig } from '../../config/config';
import { setJobLogBase } from './job-log-context';
import { LoggingInterceptor } from './logging.interceptor';
import { isQuiet } from './command-log';
import { loggedUrl } from './logged-url';
import { LOG_OPTIONS } from './error-serializer';

/**
 * The access line's level: a 5xx answer (or a request that errored) is a warning, everything else
 * info — a 5xx had the level of a 200, where no alert looks. A rate limit's refusal past the first
 * of its window writes none (`silent`: command-log.ts quietly()), nor does a request whose
 * connection closed before its answer ended (pino-http's `request aborted`): those are counted,
 * and logged once per client and window, by watchAbortedRequests — one line each let one client
 * write 3,000 lines in 6.5 s past every rate limit (no guard runs for a body that never came).
 */
export function accessLogLevel(
  req: IncomingMessage,
  res: ServerResponse,
  err?: Error,
): 'info' | 'warn' | 'silent' {
  if (isQuiet(req)) return 'silent';
  if (err) return 'warn';
  if (!res.writableEnded) return 'silent';
  return res.statusCode >= 500 ? 'warn' : 'info';
}

/**
 * The access line of a failed request. pino-http makes an Error for every 5xx answer that carries
 * none ("failed with status code 503") and logs its stack — its own frames and Node's stream code,
 * ~950 bytes of noise on every line of an outage, three times a normal line's size; that one is
 * left out (the error itself, if any, is logged where it was handled). A real error is kept.
 */
export function accessLogErrorObject(
  _req: IncomingMessage,
  res: ServerResponse & { err?: unknown },
  error: Error,
  value: Record<string, unknown>,
): Record<string, unknown> {
  if (res.err || error.message !== `failed with status code ${res.statusCode}`) return value;
  const { err: _synthetic, ...rest } = value;
  return rest;
}

/**
 * The options of the process's pino-http logger (nestjs-pino's; every Nest Logger line and the
 * access lines go through it).
 */
export function pinoHttpOptions(config: Pick<AppConfig, 'logLevel'>): Options {
  return {
    level: config.logLevel,
    redact: LOG_OPTIONS.redact,
    // the request's logger is a child bound to the request id only (cheap), under the
    // key `requestId`; the full request is logged once, on completion
    quietReqLogger: true,
    customAttributeKeys: { reqId: 'requestId' },
    customLogLevel: accessLogLevel,
    customErrorObject: accessLogErrorObject,
    // one line per request at info and below; above it the per-request logger work
    // would be spent for nothing
    autoLogging: ['info', 'debug', 'trace'].includes(config.logLevel)
      ? // (the whole target: middie, which runs pino-http, has cut req.url down to what
        // follows the middleware's mount path — `/` — when this is asked)
        {
          ignore: (req: IncomingMessage & { originalUrl?: string }) =>
            (req.originalUrl ?? req.url ?? '').startsWith('/health'),
        }
      : false,
    serializers: {
      // every `err` logged through this logger, the access lines' too: type, message,
      // stack, code (serializeError), never the fields a library hung on the error
      ...LOG_OPTIONS.serializers,
      req: (req: { id: string; method: string; url: string }) => ({
        id: req.id,
        method: req.method,
        url: loggedUrl(req.url),
      }),
    },
  };
}

/**
 * Structured JSON logs (pino); every line inside a request carries its request id, every line
 * inside a BullMQ job its job id. LoggingInterceptor adds one line per completed command; it is
 * registered before IdempotencyModule's interceptor (AppModule imports this module first), so
 * it wraps it and sees replays and refusals too.
 */
@Module({
  imports: [
    LoggerModule.forRootAsync({
      inject: [APP_CONFIG],
      useFactory: (config: AppConfig) => ({
        pinoHttp: pinoHttpOptions(config),
      }),
    }),
  ],
  providers: [{ provide: APP_INTERCEPTOR, useClass: LoggingInterceptor }],
})
export class LoggingModule {
  constructor(pino: PinoLogger) {
    setJobLogBase(() => pino.logger);
  }
}
