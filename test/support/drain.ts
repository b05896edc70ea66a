import type { INestApplicationContext } from '@nestjs/common';
import { getQueueToken } from '@nestjs/bullmq';
import type { Queue } from 'bullmq';
import type { Pool } from 'pg';
import { OutboxRelay } from '../../src/outbox/outbox.relay';
import { QUEUES, QueueName } from '../../src/queue/queues';
import { waitFor } from './wait-for';

export interface DrainOptions {
  /** The queues to wait for (default: all of them). */
  queues?: readonly QueueName[];
  /**
   * Queues whose delayed jobs count as work still to do (default: email, whose delayed jobs are
   * retries). Elsewhere delayed jobs are timers that are not due during a test (a reservation's
   * expiry, the repeatable sweeps, the refund safety net): add a queue here when the test
   * expects its delayed jobs to run.
   */
  delayed?: readonly QueueName[];
  timeoutMs?: number;
}

export interface Drained {
  outbox: { pending: number; total: number };
  queues: Partial<Record<QueueName, Record<string, number>>>;
}

const STATES = [
  'waiting',
  'active',
  'prioritized',
  'waiting-children',
  'delayed',
  'completed',
  'failed',
] as const;

/**
 * Waits, without sleeping a fixed time, until everything the outbox and the queues had to do is
 * done: no outbox row pending, and on every queue nothing waiting or active (nor delayed, for
 * the queues in `delayed`). Jobs write outbox rows and outbox rows become jobs, so it stops only
 * when two probes in a row find it all idle with the same counts (no job finished and no row
 * was written in between). The worker's relay is also run by hand, so a test does not wait for
 * its idle poll.
 *
 * Use it before asserting that something did NOT happen (no second email, no extra refund):
 * once drained, anything that was going to happen has happened.
 */
export async function drain(
  worker: INestApplicationContext,
  pool: Pool,
  options: DrainOptions = {},
): Promise<Drained> {
  const names = options.queues ?? QUEUES;
  const delayed = new Set<QueueName>(options.delayed ?? [QueueName.Email]);
  const queues = names.map((name) => ({ name, queue: worker.get<Queue>(getQueueToken(name)) }));
  let relay: OutboxRelay | undefined;
  try {
    relay = worker.get(OutboxRelay);
  } catch {
    relay = undefined; // a context without the relay: its own loop (elsewhere) moves the rows
  }
  let previous: string | undefined;
  let last: Drained | undefined;
  return waitFor(
    'the outbox and the job queues to drain',
    async (): Promise<Drained | undefined> => {
      if (relay) while ((await relay.relayOnce()).published > 0);
      const counts: Drained['queues'] = {};
      let busy = 0;
      for (const { name, queue } of queues) {
        const c = await queue.getJobCounts(...STATES);
        counts[name] = c;
        busy +=
          c.waiting +
          c.active +
          c.prioritized +
          c['waiting-children'] +
          (delayed.has(name) ? c.delayed : 0);
      }
      const { rows } = await pool.query<{ pending: number; total: number }>(
        `SELECT count(*) FILTER (WHERE status = 'pending')::int AS pending, count(*)::int AS total FROM outbox`,
      );
      const snapshot: Drained = { outbox: rows[0], queues: counts };
      last = snapshot;
      const idle = busy === 0 && rows[0].pending === 0;
      const key = JSON.stringify(snapshot);
      const stable = idle && key === previous;
      previous = idle ? key : undefined;
      return stable ? snapshot : undefined;
    },
    {
      timeoutMs: options.timeoutMs ?? 30_000,
      intervalMs: 50,
      context: () => `still busy: ${JSON.stringify(last)}`,
    },
  );
}
