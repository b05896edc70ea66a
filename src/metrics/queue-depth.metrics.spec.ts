import type Redis from 'ioredis';
import { mockOf } from '../../test/support/mocks';
import { Clock } from '../common/time/clock';
import { loadConfig } from '../config/config';
import { OutboxRepository } from '../outbox/outbox.repository';
import { COLLECT_TIMEOUT_MS, MetricsService } from './metrics.service';
import { QueueDepthMetrics, oldestPendingAgeSeconds } from './queue-depth.metrics';

/**
 * The metrics of a QueueDepthMetrics over this outbox count and a Redis whose pipeline answers
 * `exec` and whose script answers `evaluate` (nothing by default), at `now` on its clock.
 */
function scrapedWith(
  countBacklog: OutboxRepository['countBacklog'],
  exec: () => Promise<unknown[]> = async () => [],
  evaluate: (...args: unknown[]) => Promise<unknown> = async () => [],
  now = () => Date.now(),
) {
  const metrics = new MetricsService();
  const outbox = mockOf<OutboxRepository>({ countBacklog }, 'outbox');
  const redis = mockOf<Redis>(
    { pipeline: () => ({ llen: () => undefined, zcard: () => undefined, exec }), eval: evaluate },
    'redis',
  );
  new QueueDepthMetrics(
    metrics,
    outbox,
    redis,
    loadConfig({ NODE_ENV: 'development' }),
    mockOf<Clock>({ now: () => new Date(now()) }, 'clock'),
  ).onModuleInit();
  return { metrics, outbox, redis };
}

describe('QueueDepthMetrics (read at scrape time)', () => {
  it('serves a flood of scrapes from one outbox count, not one query per scrape', async () => {
    const { metrics, outbox } = scrapedWith(async () => ({
      pending: 3,
      dead: 1,
      oldestPendingAgeMs: 0,
    }));
    const pages = await Promise.all(Array.from({ length: 20 }, () => metrics.render()));
    for (const page of pages) {
      expect(page).toMatch(/^outbox_backlog\{status="pending"\} 3$/m);
      expect(page).toMatch(/^outbox_backlog\{status="dead"\} 1$/m);
    }
    expect(outbox.countBacklog).toHaveBeenCalledTimes(1);
  });

  it('counts the backlog again 5 s on also after the wall clock stepped back (an NTP step, a VM resumed): not the old count that much longer', async () => {
    jest.useFakeTimers({ doNotFake: ['nextTick', 'setImmediate'] });
    try {
      let pending = 3;
      const { metrics, outbox } = scrapedWith(async () => ({
        pending,
        dead: 0,
        oldestPendingAgeMs: 0,
      }));
      expect(await metrics.render()).toMatch(/^outbox_backlog\{status="pending"\} 3$/m);
      jest.setSystemTime(Date.now() - 3_600_000); // the wall clock an hour back
      pending = 7;
      await jest.advanceTimersByTimeAsync(6_000);
      expect(await metrics.render()).toMatch(/^outbox_backlog\{status="pending"\} 7$/m);
      expect(outbox.countBacklog).toHaveBeenCalledTimes(2);
    } finally {
      jest.useRealTimers();
    }
  });

  it('a database that fails the count leaves the backlog out of the page, not the last numbers it read', async () => {
    jest.useFakeTimers({ doNotFake: ['nextTick', 'setImmediate'] });
    try {
      let up = true;
      const { metrics } = scrapedWith(async () =>
        up
          ? { pending: 3, dead: 1, oldestPendingAgeMs: 0 }
          : Promise.reject(new Error('circuit breaker open')),
      );
      expect(await metrics.render()).toMatch(/^outbox_backlog\{status="pending"\} 3$/m);
      up = false;
      await jest.advanceTimersByTimeAsync(6_000); // past the shared count's reuse
      expect(await metrics.render()).not.toMatch(/^outbox_backlog\{/m);
    } finally {
      jest.useRealTimers();
    }
  });

  it("the oldest pending outbox row's age: as the count read it, growing while the count serves scrapes; 0 with none pending; left out while the database fails", async () => {
    jest.useFakeTimers({ doNotFake: ['nextTick', 'setImmediate'] });
    try {
      let backlog: Awaited<ReturnType<OutboxRepository['countBacklog']>> | null = {
        pending: 2,
        dead: 0,
        oldestPendingAgeMs: 90_000,
      };
      const { metrics } = scrapedWith(async () =>
        backlog ? backlog : Promise.reject(new Error('circuit breaker open')),
      );
      const age = async () =>
        /^outbox_oldest_pending_age_seconds (\S+)$/m.exec(await metrics.render())?.[1];
      expect(Number(await age())).toBeCloseTo(90, 1);
      await jest.advanceTimersByTimeAsync(3_000); // the same count, 3 s on: the row waited 3 s more
      expect(Number(await age())).toBeCloseTo(93, 1);
      backlog = { pending: 0, dead: 4, oldestPendingAgeMs: 0 }; // drained (dead rows are not waiting)
      await jest.advanceTimersByTimeAsync(3_000);
      expect(await age()).toBe('0');
      backlog = null;
      await jest.advanceTimersByTimeAsync(6_000);
      expect(await age()).toBeUndefined();
    } finally {
      jest.useRealTimers();
    }
  });

  it('oldestPendingAgeSeconds: 0 with nothing pending, whatever the time since the read', () => {
    expect(oldestPendingAgeSeconds({ pending: 0, oldestPendingAgeMs: 0, readAt: 100 }, 5_000)).toBe(
      0,
    );
    expect(oldestPendingAgeSeconds({ pending: 1, oldestPendingAgeMs: 0, readAt: 100 }, 100)).toBe(
      0,
    );
    expect(
      oldestPendingAgeSeconds({ pending: 1, oldestPendingAgeMs: 2_500, readAt: 100 }, 600),
    ).toBe(3);
  });

  it("each queue's oldest waiting job's age, from one script a scrape: 0 for an empty queue; none while Redis fails", async () => {
    const now = 1_700_000_100_000;
    let up = true;
    const { metrics, redis } = scrapedWith(
      async () => ({ pending: 0, dead: 0, oldestPendingAgeMs: 0 }),
      undefined,
      async () => {
        if (!up) throw new Error('Connection is closed.');
        // per queue, in QUEUES' order (orders, payments, email, catalog, maintenance)
        // (each: its jobs, and its first delayed job's score: due ms × 0x1000 + a counter)
        return [
          [[['1700000000000', '', '0']], ''], // waiting since 100 s ago
          [[], ''], // empty
          [
            [
              ['1700000090000', '', '0'],
              ['1699999000000', '1700000070000', '0'], // back after an attempt 30 s ago
            ],
            '',
          ],
          [[['1700000000000', '', '300000']], ''], // delayed 5 minutes: not due for 200 s yet
          // nothing waiting, a job in `delayed` due 40 s ago that no worker has fetched
          [[], String((now - 40_000) * 0x1000 + 3)],
        ];
      },
      () => now,
    );
    const page = await metrics.render();
    const age = (queue: string) =>
      new RegExp(`^queue_oldest_waiting_age_seconds\\{queue="${queue}"\\} (\\S+)$`, 'm').exec(
        page,
      )?.[1];
    expect(['orders', 'payments', 'email', 'catalog', 'maintenance'].map(age)).toEqual([
      '100',
      '0',
      '30',
      '0',
      '40',
    ]);
    expect(redis.eval).toHaveBeenCalledTimes(1);
    up = false;
    expect(await metrics.render()).not.toMatch(/^queue_oldest_waiting_age_seconds\{/m);
  });

  it('a stalled Redis or database leaves its gauge out of the page, not the page past the scrape timeout', async () => {
    jest.useFakeTimers({ doNotFake: ['nextTick', 'setImmediate'] });
    try {
      const never = () => new Promise<never>(() => undefined);
      const { metrics } = scrapedWith(never, never, never);
      metrics.counter('orders_created_total', 'orders').inc(7);
      let page: string | undefined;
      const rendering = metrics.render().then((p) => (page = p));
      await jest.advanceTimersByTimeAsync(COLLECT_TIMEOUT_MS - 1);
      expect(page).toBeUndefined(); // (the old code: never, whatever the time)
      await jest.advanceTimersByTimeAsync(1);
      await rendering;
      expect(page).toMatch(/^orders_created_total 7$/m);
      expect(page).not.toMatch(/^outbox_backlog\{/m);
      expect(page).not.toMatch(/^outbox_oldest_pending_age_seconds /m);
      expect(page).not.toMatch(/^queue_jobs\{/m);
      expect(page).not.toMatch(/^queue_oldest_waiting_age_seconds\{/m);
    } finally {
      jest.useRealTimers();
    }
  });
});
