import type { IncomingMessage } from 'node:http';
import { Module } from '@nestjs/common';
import { APP_INTERCEPTOR } from '@nestjs/core';
import { LoggerModule, PinoLogger } from 'nestjs-pino';
import { APP_CONFIG, AppConfig } from '../../config/config';
import { setJobLogBase } from './job-log-context';
import { LoggingInterceptor } from './logging.interceptor';
import { loggedUrl } from './logged-url';

/** Paths never written to logs. */
export const REDACTED_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["stripe-signature"]',
  'req.headers["idempotency-key"]',
  'res.headers["set-cookie"]',
  '*.password',
  '*.newPassword',
  '*.accessToken',
  '*.refreshToken',
  '*.token',
  '*.clientSecret',
  '*.card',
  '*.cardNumber',
  '*.cvc',
];

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
        pinoHttp: {
          level: config.logLevel,
          redact: { paths: REDACTED_PATHS, censor: '[REDACTED]' },
          // the request's logger is a child bound to the request id only (cheap), under the
          // key `requestId`; the full request is logged once, on completion
          quietReqLogger: true,
          customAttributeKeys: { reqId: 'requestId' },
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
            req: (req: { id: string; method: string; url: string }) => ({
              id: req.id,
              method: req.method,
              url: loggedUrl(req.url),
            }),
          },
        },
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
