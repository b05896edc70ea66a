import { Logger } from '@nestjs/common';
import type { KeyPrefixClaim } from '../redis/key-prefix-claim';
import { OUTBOX_MAX_ATTEMPTS, OutboxRelay, outboxBackoffMs } from './outbox.relay';
import type { OutboxRepository } from './outbox.repository';
import { type OutboxPublisher, UnknownTopicError } from './outbox.publisher';
import type { OutboxRow } from './outbox-events';
import { mockOf } from '../../test/support/mocks';
import { TimeoutError } from '../common/with-timeout';

const row = (id: string, attempts: number, ageMs = 1_000): OutboxRow => ({
  id,
  topic: 'order.created',
  aggregateId: id,
  payload: { orderId: id, reservationExpiresAt: new Date().toISOString() },
  attempts,
  ageMs,
});

function setup(
  rows: OutboxRow[],
  publish: (r: OutboxRow) => Promise<void>,
  claim: KeyPrefixClaim = heldClaim,
) {
  const repo = mockOf<OutboxRepository>(
    {
      claimDue: jest.fn().mockResolvedValue(rows),
      markPublished: jest.fn().mockResolvedValue(undefined),
      markFailed: jest.fn().mockResolvedValue(undefined),
      release: jest.fn().mockResolvedValue(undefined),
      deferUncounted: jest.fn().mockResolvedValue(undefined),
      redriveDead: jest.fn().mockResolvedValue(0),
    },
    'repo',
  );
  const publisher = mockOf<OutboxPublisher>(
    { publish: jest.fn(publish), connected: jest.fn().mockResolvedValue(true) },
    'publisher',
  );
  const relay = new OutboxRelay(repo, publisher, claim);
  return { relay, repo, publisher };
}

/** A claim of REDIS_KEY_PREFIX this process holds (the relay only runs under one). */
const heldClaim = mockOf<KeyPrefixClaim>(
  { held: () => Promise.resolve(), holds: () => true },
  'claim',
);

describe('OutboxRelay and the claim of REDIS_KEY_PREFIX', () => {
  it('publishes nothing before the process holds the prefix for its database, and stops once it is lost', async () => {
    let grant!: () => void;
    let holding = false;
    const claim = mockOf<KeyPrefixClaim>(
      {
        held: () => new Promise<void>((resolve) => (grant = resolve)),
        holds: () => holding,
      },
      'claim',
    );
    const { relay, publisher } = setup([], async () => undefined, claim);
    await relay.onApplicationBootstrap();
    // (every timer and callback due so far has run: the relay's first pass would have)
    for (let i = 0; i < 5; i++) await new Promise((r) => setTimeout(r, 0));
    expect(publisher.connected).not.toHaveBeenCalled();
    holding = true;
    grant();
    for (let i = 0; i < 50 && jest.mocked(publisher.connected).mock.calls.length === 0; i++)
      await new Promise((r) => setTimeout(r, 0));
    expect(publisher.connected).toHaveBeenCalled();
    // lost (the process is stopping): the passes stop being scheduled
    holding = false;
    await relay.beforeApplicationShutdown();
  });
});

describe('OutboxRelay', () => {
  it('marks published rows and schedules failed ones with exponential backoff', async () => {
    const { relay, repo } = setup([row('a', 1), row('b', 3)], async (r) => {
      if (r.id === 'b') throw new Error('redis down');
    });
    expect(await relay.relayOnce()).toEqual({ published: 1, failed: 1 });
    expect(repo.markPublished).toHaveBeenCalledWith(['a']);
    expect(repo.markFailed).toHaveBeenCalledWith('b', 'redis down', 4000, false);
  });

  it("never parks a row of a topic it does not know (a newer build's): back, uncounted, for a worker that knows it", async () => {
    const { relay, repo } = setup([row('n', OUTBOX_MAX_ATTEMPTS), row('o', 1)], async (r) => {
      if (r.id === 'n')
        throw new UnknownTopicError('outbox row n: unknown topic "order.teleported"');
    });
    expect(await relay.relayOnce()).toEqual({ published: 1, failed: 0 });
    expect(repo.deferUncounted).toHaveBeenCalledWith(
      'n',
      'outbox row n: unknown topic "order.teleported"',
      60_000,
    );
    expect(repo.markFailed).not.toHaveBeenCalled();
    expect(repo.markPublished).toHaveBeenCalledWith(['o']);
  });

  it('counts a row of an unknown topic written over an hour ago (no deploy takes that long: a rollback, a rename), then parks it', async () => {
    const unknown = new UnknownTopicError('outbox row n: unknown topic "order.teleported"');
    const { relay, repo } = setup(
      [row('n', 3, 61 * 60_000), row('m', OUTBOX_MAX_ATTEMPTS, 2 * 3600_000)],
      async () => {
        throw unknown;
      },
    );
    expect(await relay.relayOnce()).toEqual({ published: 0, failed: 2 });
    expect(repo.deferUncounted).not.toHaveBeenCalled();
    expect(repo.markFailed).toHaveBeenCalledWith('n', unknown.message, outboxBackoffMs(3), false);
    expect(repo.markFailed).toHaveBeenCalledWith('m', unknown.message, expect.any(Number), true);
  });

  it(`parks a row as dead after ${OUTBOX_MAX_ATTEMPTS} failed attempts`, async () => {
    const { relay, repo } = setup([row('c', OUTBOX_MAX_ATTEMPTS)], async () => {
      throw new Error('still down');
    });
    await relay.relayOnce();
    expect(repo.markFailed).toHaveBeenCalledWith('c', 'still down', expect.any(Number), true);
  });

  it("warns of an event's failed publish at its first failure and every third after it (topic, row, attempt, why), an error once parked", async () => {
    const warn = jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    const error = jest.spyOn(Logger.prototype, 'error').mockImplementation(() => undefined);
    // (the attempts are minutes apart in a real relay: past each other's 10 s window of warnings)
    jest.useFakeTimers({ doNotFake: ['nextTick', 'setImmediate', 'queueMicrotask'] });
    try {
      const logged: Array<[number, string]> = [];
      for (let attempts = 1; attempts <= OUTBOX_MAX_ATTEMPTS; attempts++) {
        warn.mockClear();
        error.mockClear();
        const { relay } = setup([row('e', attempts)], async () => {
          throw new Error('ERR Error running script: payload rejected');
        });
        await relay.relayOnce();
        for (const [line] of [...warn.mock.calls, ...error.mock.calls])
          logged.push([attempts, String(line)]);
        jest.advanceTimersByTime(11_000);
      }
      expect(logged).toEqual([
        [
          1,
          'outbox row e (order.created) not published, attempt 1 of 10, retried in 1 s: ERR Error running script: payload rejected',
        ],
        [
          4,
          'outbox row e (order.created) not published, attempt 4 of 10, retried in 8 s: ERR Error running script: payload rejected',
        ],
        [
          7,
          'outbox row e (order.created) not published, attempt 7 of 10, retried in 64 s: ERR Error running script: payload rejected',
        ],
        [
          10,
          'outbox row e (order.created) parked as dead: ERR Error running script: payload rejected',
        ],
      ]);
      expect(error).toHaveBeenCalledTimes(1); // the dead one, at error; the others at warn
    } finally {
      jest.useRealTimers();
      warn.mockRestore();
      error.mockRestore();
    }
  });

  it('every row of a batch failing alike (a script error after an upgrade) is one warning, not one per row', async () => {
    const warn = jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    try {
      const rows = Array.from({ length: 50 }, (_, i) => row(`r${i}`, 1));
      const { relay } = setup(rows, async () => {
        throw new Error('ERR Error running script (call to f_9a1b): wrong number of arguments');
      });
      await relay.relayOnce();
      expect(warn.mock.calls.map(([line]) => String(line))).toEqual([
        expect.stringMatching(/^outbox row r0 \(order\.created\) not published, attempt 1 of 10/),
      ]);
    } finally {
      warn.mockRestore();
    }
  });

  it('leases nothing while the queues are unreachable', async () => {
    const { relay, repo, publisher } = setup([row('a', 1)], async () => undefined);
    publisher.connected.mockResolvedValue(false);
    expect(await relay.relayOnce()).toEqual({ published: 0, failed: 0, unavailable: true });
    expect(repo.claimDue).not.toHaveBeenCalled();
    expect(publisher.publish).not.toHaveBeenCalled();
  });

  it("Redis refusing the write (OOM, READONLY) or not answering is the queue's fault: rows given back uncounted, never parked", async () => {
    const refusals = [
      Object.assign(new Error("OOM command not allowed when used memory > 'maxmemory'."), {
        name: 'ReplyError',
      }),
      Object.assign(new Error("READONLY You can't write against a read only replica."), {
        name: 'ReplyError',
      }),
      new TimeoutError('publish not acknowledged within 5000 ms'),
    ];
    for (const refusal of refusals) {
      const { relay, repo } = setup([row('a', OUTBOX_MAX_ATTEMPTS), row('b', 1)], async () => {
        throw refusal;
      });
      expect(await relay.relayOnce()).toEqual({ published: 0, failed: 0, unavailable: true });
      expect(repo.release).toHaveBeenCalledWith(['a', 'b']);
      expect(repo.markFailed).not.toHaveBeenCalled();
    }
  });

  it("any other error reply of Redis (WRONGTYPE, a script refusing) is the event's fault: counted", async () => {
    const wrongType = Object.assign(
      new Error('WRONGTYPE Operation against a key holding the wrong kind of value'),
      { name: 'ReplyError' },
    );
    const { relay, repo } = setup([row('a', 1)], async () => {
      throw wrongType;
    });
    expect(await relay.relayOnce()).toEqual({ published: 0, failed: 1 });
    expect(repo.markFailed).toHaveBeenCalledWith('a', wrongType.message, 1000, false);
    expect(repo.release).not.toHaveBeenCalled();
  });

  it('stops at a publish lost with the connection and gives the untried rows back uncounted', async () => {
    const { relay, repo, publisher } = setup([row('a', 1), row('b', 9), row('c', 2)], async (r) => {
      if (r.id === 'b') throw new Error('Connection is closed.');
    });
    publisher.connected.mockResolvedValueOnce(true).mockResolvedValue(false);
    expect(await relay.relayOnce()).toEqual({ published: 1, failed: 0, unavailable: true });
    expect(repo.release).toHaveBeenCalledWith(['b', 'c']);
    expect(repo.markFailed).not.toHaveBeenCalled();
    expect(publisher.publish).toHaveBeenCalledTimes(2);
    expect(repo.markPublished).toHaveBeenCalledWith(['a']);
  });

  it("a database blink in a row's bookkeeping still marks the rows published before it and gives the untried ones back uncounted", async () => {
    const { relay, repo } = setup(
      [row('a', 1), row('b', 2), row('c', 3), row('d', 4)],
      async (r) => {
        if (r.id === 'b') throw new Error('a script refused it');
      },
    );
    repo.markFailed.mockRejectedValueOnce(new Error('Connection terminated unexpectedly'));
    await expect(relay.relayOnce()).rejects.toThrow('Connection terminated unexpectedly');
    expect(repo.markPublished).toHaveBeenCalledWith(['a']);
    expect(repo.release).toHaveBeenCalledWith(['c', 'd']);
  });

  it('backs off 1 s, 2 s, 4 s … up to 5 minutes', () => {
    expect([1, 2, 3, 4].map(outboxBackoffMs)).toEqual([1000, 2000, 4000, 8000]);
    expect(outboxBackoffMs(30)).toBe(300_000);
  });
});
