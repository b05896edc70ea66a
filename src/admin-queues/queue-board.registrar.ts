import { STATUS_CODES } from 'node:http';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { FastifyAdapter as BullBoardFastifyAdapter } from '@bull-board/fastify';
import { Injectable, Logger, OnModuleInit } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import { ExecutionContextHost } from '@nestjs/core/helpers/execution-context-host';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { AuthenticatedRequest } from '../auth/principal';
import { DomainError } from '../common/errors/domain-error';
import { bearerToken } from '../common/http/bearer-token';
import { ClientRateLimitGuard } from '../common/throttling/rate-limit.guard';
import { ProblemDetailsFilter, problemBody, render } from '../common/errors/problem-details.filter';
import { QueueBoardAuth } from './queue-board-auth.service';
import { QueueBoardQueues } from './queue-board-queues';
import { loggedUrl } from '../common/logging/logged-url';
import { REDIS_OUTAGE_REPLY } from '../redis/outage-reply';
import { requestIdField } from '../common/logging/request-id-field';

const QUEUE_BOARD_PATH = '/admin/queues';

/** Sent with every 401, so a browser asks for the email and password. */
const BASIC_CHALLENGE = 'Basic realm="queues", charset="UTF-8"';

/** How soon a board request refused for Redis being away may be tried again. */
const REDIS_RETRY_AFTER_SECONDS = 5;
/**
 * What ioredis says of a connection that is gone (the board's handlers pass it on as a 500); a
 * reply that Redis cannot serve now (BUSY, LOADING, MASTERDOWN, OOM …: REDIS_OUTAGE_REPLY) is an
 * outage too — it was a 500 INTERNAL_ERROR, logged as the board's error.
 */
const REDIS_LOST =
  /Connection is closed|Stream isn't writeable|ECONNREFUSED|ECONNRESET|ETIMEDOUT|max retries per request|Command timed out/i;

const problems = new ProblemDetailsFilter();
const logger = new Logger('QueueBoard');

/** Renders an error exactly like the API's global filter (RFC 9457 problem+json). */
function sendProblem(error: unknown, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  if (error instanceof DomainError && error.status === 401) {
    // the board takes a bearer token too: one that was sent and refused says so, beside the
    // challenge for a browser's sign-in (RFC 9110 11.6.1: several challenges, one header)
    const refusedBearer = bearerToken(request.headers.authorization) !== null;
    void reply.header(
      'WWW-Authenticate',
      refusedBearer ? `${BASIC_CHALLENGE}, Bearer error="invalid_token"` : BASIC_CHALLENGE,
    );
  }
  problems.catch(error, new ExecutionContextHost([request, reply]));
  return reply;
}

/**
 * Bull Board (read-only) for every queue in QUEUES at /admin/queues, in the API process only.
 * Mounted on the Fastify instance in an encapsulated plugin whose onRequest hook authenticates
 * (QueueBoardAuth) before any of the board's routes, assets included, runs. The routes are not
 * Nest controllers, so they are absent from the OpenAPI document. Nothing here waits for Redis;
 * the board's API answers 503 while Redis is away.
 */
/** The board's paging bounds: pages of at most this many jobs, and page numbers that stay exact. */
const MAX_JOBS_PER_PAGE = 1000;
const MAX_PAGE = 1_000_000;

/** A 400 for a `page` or `jobsPerPage` that is not a whole number in its bounds; null when both are fine or absent. */
function pagingProblem(query: unknown): DomainError | null {
  const q = (query ?? {}) as Record<string, unknown>;
  for (const [name, max] of [
    ['page', MAX_PAGE],
    ['jobsPerPage', MAX_JOBS_PER_PAGE],
  ] as const) {
    const value = q[name];
    if (value === undefined) continue;
    if (
      typeof value !== 'string' ||
      !/^\d{1,7}$/.test(value) ||
      Number(value) < 1 ||
      Number(value) > max
    ) {
      return new DomainError(
        'VALIDATION_FAILED',
        `${name} must be a whole number from 1 to ${max}.`,
        {
          errors: [{ field: name, message: `must be a whole number from 1 to ${max}` }],
        },
      );
    }
  }
  return null;
}

/**
 * A stylesheet the board's page links from another origin: its template asks Google Fonts for
 * IBM Plex, which the CSP (nothing but this origin) refuses — a console error on every page,
 * and, under a looser policy, every admin's visit told to Google. The page names its fonts with
 * fallbacks (sans-serif, monospace), which it is shown in.
 */
const EXTERNAL_STYLESHEET = /<link\b[^>]*\bhref\s*=\s*["']?(?:https?:)?\/\/[^>]*>\s*/gi;

const isHtml = (reply: FastifyReply): boolean =>
  /^text\/html\b/i.test(String(reply.getHeader('content-type') ?? ''));

/** The board's page without the links that would load a stylesheet from another origin. */
const withoutExternalStylesheets = (html: string): string => html.replace(EXTERNAL_STYLESHEET, '');

/**
 * The board's refusals name a translation key, not words (`{error: {key: 'ERRORS.QUEUE_NOT_FOUND'}}`):
 * read as words for the problem's detail ("Queue not found."), or undefined.
 */
function refusalWords(error: unknown): string | undefined {
  const key = typeof error === 'object' && error !== null ? (error as { key?: unknown }).key : null;
  if (typeof key !== 'string' || !/^ERRORS\.[A-Z_]{1,64}$/.test(key)) return undefined;
  const words = key.slice('ERRORS.'.length).toLowerCase().replace(/_/g, ' ');
  return `${words.charAt(0).toUpperCase()}${words.slice(1)}.`;
}

@Injectable()
export class QueueBoardRegistrar implements OnModuleInit {
  constructor(
    private readonly adapterHost: HttpAdapterHost,
    private readonly auth: QueueBoardAuth,
    private readonly board: QueueBoardQueues,
    private readonly clientLimits: ClientRateLimitGuard,
  ) {}

  /** The board's requests, as the global guard sees a route: no scope, so the per-IP `default` policy. */
  boardRequest(): void {}

  onModuleInit(): void {
    const httpAdapter = this.adapterHost.httpAdapter;
    if (!httpAdapter) return; // the worker role has no HTTP server
    const fastify = httpAdapter.getInstance<FastifyInstance>();

    const serverAdapter = new BullBoardFastifyAdapter();
    serverAdapter.setBasePath(QUEUE_BOARD_PATH);
    createBullBoard({
      // `queues:view` is a read permission: no retry, clean, pause or remove from here
      queues: this.board.queues.map((queue) => new BullMQAdapter(queue, { readOnlyMode: true })),
      serverAdapter,
      options: { uiConfig: { boardTitle: 'Shop queues' } },
    });

    void fastify.register(
      async (board) => {
        board.addHook('onRequest', async (request, reply) => {
          try {
            // the global per-IP limit first, as for every API route: a sign-in costs database
            // reads (the account, the client's sessions) before its failures are counted, and
            // the board's routes are not Nest's, so the global guard never ran for them
            await this.clientLimits.canActivate(
              new ExecutionContextHost(
                [request, reply, undefined],
                QueueBoardRegistrar,
                this.boardRequest,
              ),
            );
            await this.auth.authorize(
              request.headers.authorization,
              request.ip,
              (principal) => ((request as AuthenticatedRequest).user = principal),
            );
          } catch (error) {
            return sendProblem(error, request, reply);
          }
          if (request.method !== 'GET' && request.method !== 'HEAD') {
            const readOnly = new DomainError(
              'METHOD_NOT_ALLOWED',
              'The queue board is read-only.',
              {
                headers: { Allow: 'GET, HEAD' }, // what a 405 must name (RFC 9110 15.5.6)
              },
            );
            return sendProblem(readOnly, request, reply);
          }
        });
        const unavailable = () =>
          new DomainError(
            'SERVICE_UNAVAILABLE',
            'Redis is unavailable; the queues cannot be read right now.',
            {
              headers: { 'Retry-After': String(REDIS_RETRY_AFTER_SECONDS) },
            },
          );
        board.addHook('preHandler', async (request, reply) => {
          // the matched route, not the raw target: the router decodes `%61pi` to `api` and drops
          // an absolute form's `http://host`, which the raw URL would not start with
          if (!request.routeOptions.url?.startsWith(`${QUEUE_BOARD_PATH}/api/`)) return;
          // the board takes any integer (1e300 too) and hands the range to Redis, which refused
          // it (a 500), or read a whole state's jobs in one script for a huge page size
          const badPaging = pagingProblem(request.query);
          if (badPaging) return sendProblem(badPaging, request, reply);
          if (this.board.redisReady) return;
          return sendProblem(unavailable(), request, reply);
        });
        // the board's own refusals and failures (its error handler answers `{error, message}`, a
        // 500 with the raw message for, e.g., a `%` its handlers decode a second time) as the
        // API's problems: a 4xx with its status, a malformed query value a 400, anything else a
        // logged 500 that says nothing of the error
        board.addHook('onSend', async (request, reply, payload) => {
          if (reply.statusCode < 400 && typeof payload === 'string' && isHtml(reply)) {
            return withoutExternalStylesheets(payload);
          }
          if (
            reply.statusCode < 400 ||
            String(reply.getHeader('content-type') ?? '').includes('problem+json')
          ) {
            return payload;
          }
          let message = '';
          let said: Record<string, unknown> = {};
          try {
            const parsed = JSON.parse(String(payload)) as unknown;
            if (typeof parsed === 'object' && parsed !== null)
              said = parsed as Record<string, unknown>;
            message = typeof said.message === 'string' ? said.message : '';
          } catch {
            /* not JSON: no message to keep */
          }
          // Redis lost after the preHandler's check (a restart, a dropped connection mid-request):
          // the outage it is, 503 with Retry-After, as before the request
          if (
            reply.statusCode >= 500 &&
            (!this.board.redisReady || REDIS_LOST.test(message) || REDIS_OUTAGE_REPLY.test(message))
          ) {
            const rendered = render(unavailable())!;
            void reply
              .code(rendered.status)
              .type('application/problem+json; charset=utf-8')
              .header('Retry-After', String(REDIS_RETRY_AFTER_SECONDS));
            return JSON.stringify(problemBody(rendered, request.id));
          }
          const status =
            reply.statusCode >= 500 && /URI malformed/i.test(message) ? 400 : reply.statusCode;
          const detail =
            message || refusalWords(said.error) || `${STATUS_CODES[status] ?? 'Bad request'}.`;
          let rendered =
            status < 500
              ? // a 404 of a route the board has (a queue or job it does not know) is no missing route
                status === 404 && request.routeOptions.url !== undefined
                ? render(new DomainError('NOT_FOUND', detail))
                : render({ statusCode: status, code: 'FST_QUEUE_BOARD', message: detail })
              : null;
          // a refusal of the board's own keeps its `error` and `message` (its UI shows them)
          if (rendered && reply.statusCode < 500)
            rendered = { ...rendered, extensions: { error: said.error, message: said.message } };
          if (!rendered) {
            logger.error(
              { ...requestIdField(request.id), url: loggedUrl(request.url), cause: message },
              'Queue board error',
            );
            rendered = {
              status: 500,
              code: 'INTERNAL_ERROR',
              detail: `An unexpected error occurred. Quote request id ${request.id} when reporting it.`,
            };
          }
          void reply.code(rendered.status).type('application/problem+json; charset=utf-8');
          return JSON.stringify(problemBody(rendered, request.id));
        });
        await board.register(serverAdapter.registerPlugin());
      },
      { prefix: QUEUE_BOARD_PATH },
    );
  }
}
