import { Logger } from '@nestjs/common';
import { DataSource, QueryFailedError, QueryRunnerAlreadyReleasedError } from 'typeorm';
import { DomainError } from '../common/errors/domain-error';
import type { AppConfig } from '../config/config';
import { DbCircuitBreaker, isConnectionFailure } from './db-circuit-breaker';

const pgError = (code: string, message = 'x') => Object.assign(new Error(message), { code });
const queryFailed = (code: string) => new QueryFailedError('SELECT 1', [], pgError(code));

/** The side probe's `SELECT 1` over a connection of its own: unanswered unless a test says otherwise. */
const sideProbe = jest.fn<Promise<void>, [number]>();

function breaker(
  failures = 3,
  halfOpenAfterMs = 60_000,
  dataSource = {} as DataSource,
  poolSize = 20,
) {
  const config = {
    database: {
      poolSize,
      breaker: { failures, halfOpenAfterMs },
      url: 'postgres://db',
      lockUrl: 'postgres://db',
    },
  } as AppConfig;
  const b = new DbCircuitBreaker(dataSource, config);
  Object.assign(b, { sides: [{ selectOne: sideProbe, close: () => undefined }] });
  return b;
}

beforeEach(() => {
  sideProbe.mockReset();
  sideProbe.mockRejectedValue(new Error('connection timeout: no answer within 3000 ms'));
});

async function openBreaker(b: DbCircuitBreaker, failures: number): Promise<void> {
  const down = () => Promise.reject(pgError('ECONNREFUSED'));
  for (let i = 0; i < failures; i++) await b.execute(down).catch(() => undefined);
  expect(b.state).toBe('open');
}

describe('isConnectionFailure', () => {
  beforeAll(() => Logger.overrideLogger(false));

  it.each([
    '08006',
    '08001',
    '08003',
    '08P01',
    '57P01',
    '57P02',
    '57P03',
    '25P03',
    '57P05',
    '28P01',
    '28000',
    '3D000',
    '57P04',
  ])('counts SQLSTATE %s', (code) => {
    expect(isConnectionFailure(queryFailed(code))).toBe(true);
  });

  it.each(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND'])(
    'counts %s',
    (code) => {
      expect(isConnectionFailure(pgError(code))).toBe(true);
    },
  );

  it('counts pool timeouts and dropped connections', () => {
    expect(isConnectionFailure(new Error('timeout exceeded when trying to connect'))).toBe(true);
    expect(isConnectionFailure(new Error('Connection terminated unexpectedly'))).toBe(true);
  });

  it("counts a lone pg Client's own connect and query timeouts (a server that accepts and never answers)", () => {
    expect(isConnectionFailure(new Error('timeout expired'))).toBe(true);
    expect(isConnectionFailure(new Error('Query read timeout'))).toBe(true);
  });

  it('counts a statement on a transaction whose connection TypeORM released after an error', () => {
    expect(isConnectionFailure(new QueryRunnerAlreadyReleasedError())).toBe(true);
  });

  it("counts 55000 at connect (a database not accepting connections), never a statement's own", () => {
    expect(isConnectionFailure(pgError('55000'))).toBe(true);
    const refused = queryFailed('55000');
    (refused.driverError as { message: string }).message =
      'database "shop" is not currently accepting connections';
    expect(isConnectionFailure(refused)).toBe(true);
    expect(isConnectionFailure(queryFailed('55000'))).toBe(false);
  });

  it.each(['23505', '23514', '40001', '40P01', '22P02', 'P0001'])(
    'never counts SQLSTATE %s',
    (code) => {
      expect(isConnectionFailure(queryFailed(code))).toBe(false);
    },
  );
});

describe('DbCircuitBreaker', () => {
  it('opens after N consecutive connection failures, then refuses at once with 503 and Retry-After', async () => {
    const b = breaker(3);
    const down = jest.fn().mockRejectedValue(pgError('ECONNREFUSED'));
    // connections that cannot be had while it is closed: the longest half-open wait (a pool
    // whose queue ran out is so too: a retry at once would only join that queue) …
    for (let i = 0; i < 2; i++) {
      await expect(b.execute(down)).rejects.toMatchObject({
        code: 'SERVICE_UNAVAILABLE',
        options: { headers: { 'Retry-After': '60' } },
      });
    }
    // … and the one that opens it, the wait before its first probe: 1 s
    await expect(b.execute(down)).rejects.toMatchObject({
      options: { headers: { 'Retry-After': '1' } },
    });
    expect(b.state).toBe('open');
    const work = jest.fn().mockResolvedValue('ok');
    const refused = await b.execute(work).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(DomainError);
    expect(refused).toMatchObject({ status: 503, options: { headers: { 'Retry-After': '1' } } });
    expect(work).not.toHaveBeenCalled();
  });

  it('connections that died under their statements while the circuit stays closed (one blink, counted once) answer Retry-After 1', async () => {
    const b = breaker(2);
    for (let i = 0; i < 2; i++) {
      await expect(
        b.execute(jest.fn().mockRejectedValue(queryFailed('57P01'))),
      ).rejects.toMatchObject({
        code: 'SERVICE_UNAVAILABLE',
        options: { headers: { 'Retry-After': '1' } },
      });
    }
    expect(b.state).toBe('closed');
  });

  it('counts the statements a restart fails together (all begun before the first failure) as one failure', async () => {
    const b = breaker(3);
    // five statements under way when the connections drop: they fail one after another, each 503
    let drop!: () => void;
    const dropped = new Promise<void>((resolve) => (drop = resolve));
    const inFlight = Array.from({ length: 5 }, () =>
      b.execute(async () => {
        await dropped;
        await new Promise((r) => setTimeout(r, 2));
        throw pgError('ECONNRESET');
      }),
    );
    drop();
    for (const outcome of await Promise.allSettled(inFlight)) {
      expect(outcome).toMatchObject({
        status: 'rejected',
        reason: { code: 'SERVICE_UNAVAILABLE' },
      });
    }
    expect(b.state).toBe('closed'); // (it opened after three of them)
  });

  it("counts the pool's connections a reset killed, dying one wave after another as requests take them, as one failure — up to the pool's size; a connection that cannot be had still counts", async () => {
    const b = breaker(3, 60_000, {} as DataSource, 6);
    const underStatement = (err: Error) => new QueryFailedError('SELECT 1', [], err);
    const died = [
      underStatement(pgError('ECONNRESET')),
      underStatement(new Error('Connection terminated unexpectedly')),
      underStatement(new Error('Client has encountered a connection error')),
      new QueryRunnerAlreadyReleasedError(),
      underStatement(pgError('EPIPE')),
      underStatement(pgError('57P01', 'terminating connection due to administrator command')),
    ];
    // each wave begins after the previous failure (the requests the gate let in next), 20 ms apart
    for (const err of died) {
      await new Promise((r) => setTimeout(r, 20));
      await expect(b.execute(() => Promise.reject(err))).rejects.toMatchObject({
        code: 'SERVICE_UNAVAILABLE',
      });
    }
    expect(b.state).toBe('closed');
    // more deaths than the pool had connections: not the same blink any more
    const reset = () => Promise.reject(underStatement(pgError('ECONNRESET')));
    await b.execute(reset).catch(() => undefined);
    await b.execute(reset).catch(() => undefined);
    expect(b.state).toBe('closed'); // (one counted, and the next death is the same blink again)
    // the database refuses new connections: counted one after another, as before
    const refused = breaker(3);
    await refused.execute(reset).catch(() => undefined);
    for (let i = 0; i < 2; i++)
      await refused.execute(() => Promise.reject(pgError('ECONNREFUSED'))).catch(() => undefined);
    expect(refused.state).toBe('open');
    // a balancer that accepts each new connection and resets or closes it: connections that
    // cannot be had (raw, from the pool's connect), counted one after another however quickly
    for (const atConnect of [
      () => Object.assign(pgError('ECONNRESET', 'connect ECONNRESET'), { syscall: 'connect' }),
      () => new Error('Connection terminated unexpectedly'),
    ]) {
      const dropped = breaker(3);
      for (let i = 0; i < 3; i++) {
        await new Promise((r) => setTimeout(r, 5));
        await dropped.execute(() => Promise.reject(atConnect())).catch(() => undefined);
      }
      expect(dropped.state).toBe('open');
    }
  });

  it('in a slow outage, attempts begun before a counted failure that fail well after it count, one after another', async () => {
    const b = breaker(3);
    // each waited for a pool connection that never came (well past the 250 ms episode: a loaded
    // full run once had the first refusal counted ~100 ms late, and 300 ms fell inside it)
    const slow = [1000, 2000].map((ms) =>
      b.execute(async () => {
        await new Promise((r) => setTimeout(r, ms));
        throw new Error('timeout exceeded when trying to connect');
      }),
    );
    await b.execute(() => Promise.reject(pgError('ECONNREFUSED'))).catch(() => undefined);
    await Promise.allSettled(slow);
    expect(b.state).toBe('open'); // (counted by start time alone: never, while requests keep coming)
  });

  it("never opens on waits in the pool's own queue that ran out while a connection of its own is answered (every connection busy on a lock), but answers each 503", async () => {
    sideProbe.mockResolvedValue(undefined);
    const b = breaker(2);
    const queueTimeout = () => Promise.reject(new Error('timeout exceeded when trying to connect'));
    // a burst of them is one side probe (its verdict stands for the ones right after it)
    const burst = await Promise.allSettled(
      Array.from({ length: 5 }, () => b.execute(queueTimeout)),
    );
    for (const outcome of burst) {
      expect(outcome).toMatchObject({
        status: 'rejected',
        reason: { code: 'SERVICE_UNAVAILABLE' },
      });
    }
    expect(sideProbe).toHaveBeenCalledTimes(1);
    for (let i = 0; i < 3; i++) {
      await new Promise((resolve) => setTimeout(resolve, 5)); // (not one episode)
      await expect(b.execute(queueTimeout)).rejects.toMatchObject({ code: 'SERVICE_UNAVAILABLE' });
    }
    expect(b.state).toBe('closed');
    // nor do they reset the count of real failures between them
    await b.execute(() => Promise.reject(pgError('ECONNREFUSED'))).catch(() => undefined);
    await new Promise((resolve) => setTimeout(resolve, 5));
    await b.execute(queueTimeout).catch(() => undefined);
    await new Promise((resolve) => setTimeout(resolve, 5));
    await b.execute(() => Promise.reject(pgError('ECONNREFUSED'))).catch(() => undefined);
    expect(b.state).toBe('open');
  });

  it("counts waits in the pool's own queue that ran out while a connection of its own is not answered either (an outage without resets)", async () => {
    const b = breaker(2);
    const queueTimeout = () => Promise.reject(new Error('timeout exceeded when trying to connect'));
    await b.execute(queueTimeout).catch(() => undefined);
    expect(b.state).toBe('closed');
    await new Promise((resolve) => setTimeout(resolve, 5)); // (not one episode)
    await expect(b.execute(queueTimeout)).rejects.toMatchObject({ code: 'SERVICE_UNAVAILABLE' });
    expect(b.state).toBe('open');
    expect(sideProbe).toHaveBeenCalledTimes(1); // (the second within the first's verdict)
  });

  it('with a separate lock endpoint (a pooler in front of the pool), an answer over either route keeps a queue timeout uncounted', async () => {
    const config = {
      database: {
        breaker: { failures: 1, halfOpenAfterMs: 60_000 },
        url: 'postgres://pooler',
        lockUrl: 'postgres://direct',
      },
    } as AppConfig;
    const b = new DbCircuitBreaker({} as DataSource, config);
    const routes = (b as unknown as { sides: { connectionString: string }[] }).sides.map(
      (side) => side.connectionString,
    );
    expect(routes).toEqual(['postgres://pooler', 'postgres://direct']);
    const pooler = jest.fn().mockRejectedValue(new Error('connection timeout')); // its server connections all held
    const direct = jest.fn().mockResolvedValue(undefined);
    Object.assign(b, {
      sides: [
        { selectOne: pooler, close: () => undefined },
        { selectOne: direct, close: () => undefined },
      ],
    });
    await expect(
      b.execute(() => Promise.reject(new Error('timeout exceeded when trying to connect'))),
    ).rejects.toMatchObject({ code: 'SERVICE_UNAVAILABLE' });
    expect(b.state).toBe('closed');
  });

  it("a lock endpoint's connection failure (uncounted) answers the lock sessions' fail-fast wait, DB_BREAKER_HALF_OPEN_MS, whatever the breaker's own", async () => {
    const b = breaker(3, 5000);
    const refused = b.uncounted(() => Promise.reject(pgError('ECONNREFUSED')));
    await expect(refused).rejects.toMatchObject({
      code: 'SERVICE_UNAVAILABLE',
      options: { headers: { 'Retry-After': '5' } },
    });
    expect(b.state).toBe('closed');
  });

  it('counts the failures of attempts begun after the last one, however quickly they come', async () => {
    const b = breaker(3);
    b.execute(() => Promise.reject(pgError('ECONNREFUSED'))).catch(() => undefined);
    await new Promise((r) => setImmediate(r));
    const down = () => Promise.reject(pgError('ECONNREFUSED'));
    await b.execute(down).catch(() => undefined);
    expect(b.state).toBe('closed');
    await b.execute(down).catch(() => undefined);
    expect(b.state).toBe('open');
  });

  it('never opens on constraint violations or serialization failures, and passes them through', async () => {
    const b = breaker(2);
    for (const code of ['23505', '40001', '23514', '40P01']) {
      const err = queryFailed(code);
      await expect(b.execute(() => Promise.reject(err))).rejects.toBe(err);
    }
    expect(b.state).toBe('closed');
  });

  it("names the failure that opened it on its open line — SQLSTATE or errno and the driver's message (a rotated password) — and no URL's credentials", async () => {
    const error = jest.spyOn(Logger.prototype, 'error').mockImplementation(() => undefined);
    const openLine = async (failure: Error) => {
      error.mockClear();
      const b = breaker(2);
      for (let i = 0; i < 2; i++) await b.execute(() => Promise.reject(failure)).catch(() => 0);
      expect(b.state).toBe('open');
      expect(error).toHaveBeenCalledTimes(1);
      return String(error.mock.calls[0][0]);
    };
    try {
      // pg's refusal at sign-in (a DatabaseError: a SQLSTATE and a severity), as a rotated password gives it
      const rotated = Object.assign(new Error('password authentication failed for user "shop"'), {
        code: '28P01',
        severity: 'FATAL',
      });
      expect(await openLine(rotated)).toBe(
        'database circuit breaker open: failing fast for 1000 ms; cause: 28P01 password authentication failed for user "shop"',
      );
      expect(await openLine(pgError('ECONNREFUSED', 'connect ECONNREFUSED 10.0.0.5:5432'))).toMatch(
        /; cause: connect ECONNREFUSED 10\.0\.0\.5:5432$/,
      );
      // a statement's (TypeORM wraps it): the driver's error is the one named
      const wrapped = new QueryFailedError('SELECT 1', [], pgError('08006', 'connection failure'));
      expect(await openLine(wrapped)).toMatch(/; cause: 08006 connection failure$/);
      // Node's connect to a name of several addresses: an AggregateError without a message
      const both = Object.assign(
        new AggregateError(
          [
            new Error('connect ECONNREFUSED ::1:5432'),
            new Error('connect ECONNREFUSED 127.0.0.1:5432'),
          ],
          '',
        ),
        { code: 'ECONNREFUSED' },
      );
      expect(await openLine(both)).toMatch(
        /; cause: connect ECONNREFUSED ::1:5432; connect ECONNREFUSED 127\.0\.0\.1:5432$/,
      );
      const withUrl = pgError(
        'ENOTFOUND',
        'getaddrinfo ENOTFOUND db (postgres://shop:s3cret@db:5432/shop)',
      );
      const line = await openLine(withUrl);
      expect(line).not.toContain('s3cret');
      expect(line).toContain('postgres://…@db:5432/shop');
    } finally {
      error.mockRestore();
    }
  });

  describe('after the half-open wait', () => {
    beforeEach(() => jest.useFakeTimers({ doNotFake: ['nextTick', 'setImmediate'] }));
    afterEach(() => jest.useRealTimers());

    it("probes with SELECT 1, not the caller's work, and closes on its answer before running the work", async () => {
      const query = jest.fn().mockResolvedValue([{ '?column?': 1 }]);
      const b = breaker(2, 1000, { query } as unknown as DataSource);
      await openBreaker(b, 2);
      jest.advanceTimersByTime(1000);
      const order: string[] = [];
      query.mockImplementation(async (sql: string) => (order.push(sql), []));
      const work = jest.fn(async () => (order.push('work'), 'done'));
      await expect(b.execute(work)).resolves.toBe('done');
      expect(order).toEqual(['SELECT 1', 'work']);
      expect(b.state).toBe('closed');
    });

    it("closes, counting anew, when the probe's wait in the pool runs out while a connection of its own is answered (a frozen lock holder's queue)", async () => {
      sideProbe.mockResolvedValue(undefined);
      const query = jest.fn().mockReturnValue(new Promise(() => undefined)); // queued behind the holder's checkouts
      const b = breaker(2, 1000, { query } as unknown as DataSource);
      await openBreaker(b, 2);
      jest.advanceTimersByTime(1000);
      const work = jest.fn().mockResolvedValue('done');
      const answer = b.execute(work);
      await jest.advanceTimersByTimeAsync(3000);
      await expect(answer).resolves.toBe('done');
      expect(b.state).toBe('closed');
      // one failure after it is one of DB_BREAKER_FAILURES, not the one past the old count
      await b.execute(() => Promise.reject(pgError('ECONNREFUSED'))).catch(() => undefined);
      expect(b.state).toBe('closed');
    });

    it("closes counting anew when the probe's own wait in the pool's queue runs out while a connection of its own is answered", async () => {
      sideProbe.mockResolvedValue(undefined);
      const query = jest
        .fn()
        .mockRejectedValue(new Error('timeout exceeded when trying to connect'));
      const b = breaker(2, 1000, { query } as unknown as DataSource);
      await openBreaker(b, 2);
      jest.advanceTimersByTime(1000);
      await expect(b.execute(jest.fn())).rejects.toMatchObject({ code: 'SERVICE_UNAVAILABLE' });
      expect(b.state).toBe('closed');
      await b.execute(() => Promise.reject(pgError('ECONNREFUSED'))).catch(() => undefined);
      expect(b.state).toBe('closed'); // (cockatiel kept the count at 2: this reopened it)
    });

    it("stays open when only the lock sessions' route answers past the probe's 3 s (a hung pooler in front of the pool)", async () => {
      const query = jest.fn().mockReturnValue(new Promise(() => undefined));
      const b = breaker(2, 1000, { query } as unknown as DataSource);
      const pooler = jest.fn().mockRejectedValue(new Error('connection timeout'));
      const direct = jest.fn().mockResolvedValue(undefined);
      Object.assign(b, {
        sides: [
          { selectOne: pooler, close: () => undefined },
          { selectOne: direct, close: () => undefined },
        ],
      });
      await openBreaker(b, 2);
      jest.advanceTimersByTime(1000);
      const work = jest.fn().mockResolvedValue('done');
      const answer = b.execute(work).catch((e: unknown) => e);
      await jest.advanceTimersByTimeAsync(3000);
      expect(await answer).toMatchObject({ code: 'SERVICE_UNAVAILABLE' });
      expect([pooler.mock.calls.length, direct.mock.calls.length, b.state]).toEqual([1, 0, 'open']);
      expect(work).not.toHaveBeenCalled();
    });

    it('waits 1 s before its first probe, doubling after each probe that fails up to DB_BREAKER_HALF_OPEN_MS; opened again soon after it closed it goes on doubling, 30 s later from 1 s (a fixed 5 s made a 300 ms outage 5.2 s of 503s)', async () => {
      const query = jest.fn().mockRejectedValue(pgError('ECONNREFUSED'));
      const b = breaker(2, 5000, { query } as unknown as DataSource);
      const retryAfter = async () =>
        ((await b.execute(jest.fn()).catch((e: unknown) => e)) as DomainError).options?.headers?.[
          'Retry-After'
        ];
      await openBreaker(b, 2);
      const waits: string[] = [];
      for (const ms of [1000, 2000, 4000, 5000, 5000]) {
        waits.push(String(await retryAfter()));
        jest.advanceTimersByTime(ms - 1);
        expect(query).toHaveBeenCalledTimes(waits.length - 1); // (not probed before its wait)
        await retryAfter();
        jest.advanceTimersByTime(1);
        await retryAfter(); // the probe, refused: open again, for twice as long
        expect(b.state).toBe('open');
      }
      expect(waits).toEqual(['1', '2', '4', '5', '5']);
      jest.advanceTimersByTime(5000);
      query.mockResolvedValue([]);
      await expect(b.execute(async () => 'done')).resolves.toBe('done');
      expect(b.state).toBe('closed');
      // falling over again at once (a crash loop): not probed every second
      await openBreaker(b, 2);
      expect(await retryAfter()).toBe('5');
      jest.advanceTimersByTime(5000);
      await expect(b.execute(async () => 'done')).resolves.toBe('done');
      jest.advanceTimersByTime(30_000);
      await openBreaker(b, 2);
      expect(await retryAfter()).toBe('1');
    });

    it('a probe that gets no answer in time opens the breaker again, and the work never runs', async () => {
      const query = jest.fn().mockReturnValue(new Promise(() => undefined)); // a black-holed connection
      const b = breaker(2, 1000, { query } as unknown as DataSource);
      await openBreaker(b, 2);
      jest.advanceTimersByTime(1000);
      const work = jest.fn().mockResolvedValue('done');
      const answer = b.execute(work).catch((e: unknown) => e);
      // meanwhile every other caller is refused at once
      await expect(b.execute(work)).rejects.toMatchObject({ code: 'SERVICE_UNAVAILABLE' });
      await jest.advanceTimersByTimeAsync(3000);
      expect(await answer).toMatchObject({ code: 'SERVICE_UNAVAILABLE', status: 503 });
      expect(work).not.toHaveBeenCalled();
      expect(b.state).toBe('open');
    });
  });
});
