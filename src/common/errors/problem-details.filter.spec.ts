import { Writable } from 'node:stream';
import { ConsoleLogger, Logger } from '@nestjs/common';
import pino from 'pino';
import pinoHttp from 'pino-http';
import { Logger as NestPinoLogger, PinoLogger } from 'nestjs-pino';
import { Store, storage } from 'nestjs-pino/storage';
import { ExecutionContextHost } from '@nestjs/core/helpers/execution-context-host';
import { QueryFailedError } from 'typeorm';
import { DomainError } from './domain-error';
import { ProblemDetailsFilter } from './problem-details.filter';
import { pinoHttpOptions } from '../logging/logging.module';

const SECRETS = [
  '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA',
  'victim@example.com',
  'pi_secret_123',
];

/** A pg DatabaseError as the driver raises it: message and detail echo the values. */
function pgError(code: string, extra: Record<string, unknown> = {}): Error {
  return Object.assign(new Error(`invalid input: "${SECRETS[1]}"`), {
    code,
    severity: 'ERROR',
    detail: `Key (email)=(${SECRETS[1]}) already exists.`,
    ...extra,
  });
}

function failedQuery(code: string, extra: Record<string, unknown> = {}): QueryFailedError {
  return new QueryFailedError(
    `INSERT INTO users (email, password_hash) VALUES ($1, $2)`,
    [SECRETS[1], SECRETS[0], SECRETS[2]],
    pgError(code, extra),
  );
}

function render(error: unknown) {
  const sent: {
    status?: number;
    body?: Record<string, unknown>;
    headers?: Record<string, string>;
  } = {};
  const reply = {
    status: (s: number) => ((sent.status = s), reply),
    type: () => reply,
    header: (name: string, value: string) => (
      (sent.headers = { ...sent.headers, [name]: value }),
      reply
    ),
    getHeader: (name: string) => sent.headers?.[name],
    hasHeader: (name: string) =>
      Object.keys(sent.headers ?? {}).some((h) => h.toLowerCase() === name.toLowerCase()),
    send: (b: Record<string, unknown>) => ((sent.body = b), reply),
  };
  const request = { id: 'req-12345678', method: 'POST', url: '/v1/auth/register' };
  new ProblemDetailsFilter().catch(error, new ExecutionContextHost([request, reply]));
  return sent;
}

describe('ProblemDetailsFilter and database errors', () => {
  let logged: unknown[][];
  beforeEach(() => {
    logged = [];
    for (const level of ['error', 'warn', 'log', 'debug'] as const) {
      jest.spyOn(Logger.prototype, level).mockImplementation((...args: unknown[]) => {
        logged.push(args);
      });
    }
  });
  afterEach(() => jest.restoreAllMocks());

  it("names the request on its lines once: not again inside the request's logging context, whose logger binds the id", () => {
    const fields = () => logged.map((args) => args[0] as Record<string, unknown>);
    render(failedQuery('23505'));
    render(failedQuery('42P01'));
    expect(fields()).toEqual([
      expect.objectContaining({ requestId: 'req-12345678' }),
      expect.objectContaining({ requestId: 'req-12345678' }),
    ]);
    logged = [];
    storage.run(new Store(pino({ enabled: false }).child({ requestId: 'req-12345678' })), () => {
      render(failedQuery('23505'));
      render(failedQuery('42P01'));
    });
    expect(fields()).toHaveLength(2);
    for (const line of fields()) expect(line).not.toHaveProperty('requestId');
  });

  it('answers SQLSTATE class 22 (bad data: NUL, out of range, bad syntax) as 400 VALIDATION_FAILED', () => {
    for (const code of ['22021', '22003', '22P02', '22007']) {
      expect(render(failedQuery(code))).toMatchObject({
        status: 400,
        body: { code: 'VALIDATION_FAILED' },
      });
    }
  });

  it('answers a unique violation as 409 and other constraint violations as 4xx, never 500', () => {
    expect(render(failedQuery('23505', { constraint: 'users_email_key' }))).toMatchObject({
      status: 409,
      body: { code: 'CONFLICT' },
    });
    expect(render(failedQuery('23514'))).toMatchObject({ status: 409 });
    expect(render(failedQuery('23503'))).toMatchObject({ status: 409 });
    // a row for the caller's account, gone under its still-valid access token: nobody, not a conflict
    expect(render(failedQuery('23503', { constraint: 'cart_items_user_id_fkey' }))).toMatchObject({
      status: 401,
      body: { code: 'UNAUTHENTICATED' },
    });
    expect(render(failedQuery('23502'))).toMatchObject({ status: 400 });
    expect(render(pgError('22021'))).toMatchObject({ status: 400 });
    // anything else stays a bare 500, without internals
    const other = render(failedQuery('42P01'));
    expect(other).toMatchObject({ status: 500, body: { code: 'INTERNAL_ERROR' } });
    const body = JSON.stringify(other.body);
    for (const secret of SECRETS) expect(body).not.toContain(secret);
    expect(body).not.toContain('INSERT');
  });

  it('answers a serialization failure or deadlock its retries did not get past as 503 with Retry-After, not 500', () => {
    for (const code of ['40001', '40P01']) {
      expect(render(failedQuery(code))).toMatchObject({
        status: 503,
        body: { code: 'SERVICE_UNAVAILABLE' },
        headers: { 'Retry-After': '1' },
      });
    }
  });

  it('answers a cancelled statement, a lock timeout or a server short of resources as 503 with Retry-After', () => {
    for (const code of ['57014', '55P03', '53300', '53200', '53100']) {
      expect(render(failedQuery(code))).toMatchObject({
        status: 503,
        body: { code: 'SERVICE_UNAVAILABLE' },
        headers: { 'Retry-After': '1' },
      });
    }
  });

  it("answers a body the client stopped sending (Node's `aborted`, as Fastify passes it on) as 400, logged as no error", () => {
    const aborted = Object.assign(new Error('aborted'), { code: 'ECONNRESET', statusCode: 400 });
    expect(render(aborted)).toMatchObject({ status: 400, body: { code: 'BAD_REQUEST' } });
    expect(logged).toEqual([]);
  });

  it('answers a value beyond a server limit (class 54, e.g. an index row too large) as 400, not 500', () => {
    for (const code of ['54000', '54001', '54023']) {
      expect(render(failedQuery(code))).toMatchObject({
        status: 400,
        body: { code: 'VALIDATION_FAILED' },
      });
    }
  });

  it("renders an error that knows its problem (toDomainError, e.g. a payment gateway's) as that problem", () => {
    const gatewayDown = Object.assign(new Error('connect ETIMEDOUT api.stripe.com'), {
      toDomainError: () =>
        new DomainError(
          'SERVICE_UNAVAILABLE',
          'The payment provider is unavailable; retry later.',
          {
            headers: { 'Retry-After': '5' },
          },
        ),
    });
    const sent = render(gatewayDown);
    expect(sent).toMatchObject({
      status: 503,
      body: { code: 'SERVICE_UNAVAILABLE' },
      headers: { 'Retry-After': '5' },
    });
    expect(JSON.stringify(sent.body)).not.toContain('stripe.com');
    // the provider's own words are the operator's: logged, with the request id
    expect(JSON.stringify(logged)).toContain('connect ETIMEDOUT api.stripe.com');
    expect(JSON.stringify(logged)).toContain('req-12345678');
  });

  it("logs a constraint answered as the generic 409 as an error (a code path let it through), and a client's refusal the filter maps (a value out of range, an account gone) as a warning", () => {
    const levels = () => logged.map((args) => args[1]);
    const spied = (level: 'error' | 'warn') =>
      (Logger.prototype[level] as unknown as jest.Mock).mock.calls.length;
    render(failedQuery('23514', { constraint: 'orders_status_transition' }));
    render(failedQuery('23505', { constraint: 'stock_movements_settled_once' }));
    expect([spied('error'), spied('warn')]).toEqual([2, 0]);
    expect(levels()).toEqual([
      'An integrity constraint refused a write the code let through',
      'An integrity constraint refused a write the code let through',
    ]);
    render(failedQuery('22003'));
    render(failedQuery('23502'));
    render(failedQuery('23503', { constraint: 'cart_items_user_id_fkey' }));
    render(failedQuery('40001'));
    expect([spied('error'), spied('warn')]).toEqual([2, 4]);
  });

  it('logs a server short of resources (SQLSTATE class 53) as an error saying what it is short of, not as a warning like a lock timeout', () => {
    const spied = (level: 'error' | 'warn') =>
      (Logger.prototype[level] as unknown as jest.Mock).mock.calls.length;
    render(failedQuery('55P03'));
    render(failedQuery('57014'));
    expect([spied('error'), spied('warn')]).toEqual([0, 2]);
    logged = [];
    for (const code of ['53100', '53200', '53300', '53400', '53000']) render(failedQuery(code));
    expect([spied('error'), spied('warn')]).toEqual([5, 2]);
    expect(logged.map((args) => args[1])).toEqual([
      'Database refused a request: the database is out of disk space',
      'Database refused a request: the database is out of memory',
      'Database refused a request: the database has no connection slots left (too many connections)',
      'Database refused a request: the database reached a configured limit',
      'Database refused a request: the database is short of resources',
    ]);
    expect(logged[0][0]).toMatchObject({
      database: { sqlState: '53100', table: undefined },
      reason: 'the database is out of disk space',
    });
    for (const secret of SECRETS) expect(JSON.stringify(logged)).not.toContain(secret);
  });

  it('logs a database error by SQLSTATE, constraint and statement head only: no values, statement or detail', () => {
    render(failedQuery('23505', { constraint: 'users_email_key', table: 'users' }));
    render(failedQuery('42P01'));
    const text = JSON.stringify(logged);
    for (const secret of SECRETS) expect(text).not.toContain(secret);
    expect(text).not.toContain('VALUES');
    expect(text).toContain('23505');
    expect(text).toContain('users_email_key');
    expect(text).toContain('INSERT INTO users');
    expect(text).toContain('42P01');
  });
});

describe("ProblemDetailsFilter and an error it cannot summarise, through the process's logger", () => {
  afterEach(() => Logger.overrideLogger(new ConsoleLogger()));

  it('logs a QueryFailedError without a SQLSTATE by type, message, stack and code, never its query, parameters or driver error', () => {
    const lines: string[] = [];
    const stream = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(chunk.toString());
        done();
      },
    });
    // the logger LoggingModule gives nestjs-pino, as the filter's Logger reaches it
    const http = pinoHttp({ ...pinoHttpOptions({ logLevel: 'info' }), stream });
    Logger.overrideLogger(
      new NestPinoLogger(new PinoLogger({ pinoHttp: { logger: http.logger } }), {}),
    );
    // a driver error with no code: pg's own (a connection ended mid-query), not the server's
    const noCode = new QueryFailedError(
      'INSERT INTO users (email, password_hash) VALUES ($1, $2)',
      [SECRETS[1], SECRETS[0]],
      Object.assign(new Error('Connection terminated unexpectedly'), { query: 'SELECT 1' }),
    );
    expect(render(noCode)).toMatchObject({ status: 500, body: { code: 'INTERNAL_ERROR' } });
    expect(lines).toHaveLength(1);
    const line = JSON.parse(lines[0]) as { msg: string; err: Record<string, unknown> };
    expect(line.msg).toBe('Unhandled error');
    expect(Object.keys(line.err).sort()).toEqual(['message', 'stack', 'type']);
    expect(line.err).toMatchObject({
      type: 'QueryFailedError',
      message: 'Connection terminated unexpectedly',
    });
    for (const secret of [...SECRETS, 'INSERT', 'password_hash'])
      expect(lines[0]).not.toContain(secret);
  });
});
