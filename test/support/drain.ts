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
   * Queues whose delayed jobs all count as work still to do (default: email, whose delayed jobs
   * are retries). Elsewhere delayed jobs are timers that are not due during a test (a
   * reservation's expiry, the repeatable sweeps, the refund safety net): add a queue here when
   * the test expects its delayed jobs to run. A failed job waiting for its retry counts on every
   * queue (it is work that will run: its effects are yet to come).
   */
  delayed?: readonly QueueName[];
  /**
   * Delayed jobs to run now rather than when their timer is due (promoted once each, then
   * waited for like any job): e.g. a refund's settle-refund follow-up (5 s after the request),
   * whose effects a test asserting "once" must have seen.
   */
  due?: (jobId: string) => boolean;
  timeoutMs?: number;
}

export interface Drained {
  outbox: { pending: number; total: number };
  queues: Partial<Record<QueueName, Record<string, number>>>;
  /** Failed jobs still waiting for their retry (only while drain waits for them). */
  retries?: string[];
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
 * Delayed jobs waiting for a retry (attempted before, their backoff not over) on the queues whose
 * delayed jobs are otherwise timers; the schedulers' next runs (`repeat:…`) are not retries.
 */
async function retriesPending(
  queues: { name: QueueName; queue: Queue }[],
  counted: ReadonlySet<QueueName>,
): Promise<string[]> {
  const pending: string[] = [];
  for (const { name, queue } of queues) {
    if (counted.has(name)) continue;
    const client = await queue.client;
    const ids = (await client.zrange(queue.keys.delayed, 0, -1)).filter(
      (id) => !id.startsWith('repeat:'),
    );
    if (ids.length === 0) continue;
    const attempts = await Promise.all(ids.map((id) => client.hget(queue.toKey(id), 'atm')));
    ids.forEach((id, i) => {
      if (Number(attempts[i] ?? 0) > 0) pending.push(`${name}: ${id}`);
    });
  }
  return pending;
}

/** Promotes the delayed jobs `due` names (each once): they run now. */
async function promoteDue(
  queues: { queue: Queue }[],
  due: (jobId: string) => boolean,
  promoted: Set<string>,
): Promise<void> {
  for (const { queue } of queues) {
    const client = await queue.client;
    for (const id of await client.zrange(queue.keys.delayed, 0, -1)) {
      if (!due(id) || promoted.has(`${queue.name}:${id}`)) continue;
      promoted.add(`${queue.name}:${id}`);
      await (await queue.getJob(id))?.promote().catch(() => undefined); // (it ran meanwhile)
    }
  }
}

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
  const promoted = new Set<string>();
  return waitFor(
    'the outbox and the job queues to drain',
    async (): Promise<Drained | undefined> => {
      if (relay) while ((await relay.relayOnce()).published > 0);
      if (options.due) await promoteDue(queues, options.due, promoted);
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
      const retries =
        busy === 0 && rows[0].pending === 0 ? await retriesPending(queues, delayed) : [];
      if (retries.length > 0) last = { ...snapshot, retries };
      const idle = busy === 0 && rows[0].pending === 0 && retries.length === 0;
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
