/**
 * An outbox row a worker could not relay ten times is parked as dead — during a rolling deploy,
 * for one because the worker was older than the API that wrote it and did not know its topic.
 * Nothing used to give such a row another try. A worker now gives the dead rows of every topic it
 * knows their attempts back when it boots — those written within the email reconciler's 6 days;
 * older ones, and rows of topics it does not know, stay dead.
 */
import { randomUUID } from 'node:crypto';
import type { INestApplicationContext } from '@nestjs/common';
import { drain } from '../support/drain';
import { bootTestWorker } from '../support/test-worker';
import { TestApp, bootTestApp } from '../support/test-app';

describe('dead outbox rows when a worker boots', () => {
  let t: TestApp;
  let worker: INestApplicationContext | undefined;

  beforeAll(async () => {
    t = await bootTestApp();
  });
  afterAll(async () => {
    await worker?.close();
    await t?.close();
  });

  const park = async (topic: string, writtenAgo = '10 minutes') => {
    const id = randomUUID();
    await t.db.pool.query(
      `INSERT INTO outbox (id, topic, aggregate_id, payload, status, attempts, last_error, next_attempt_at, created_at)
       VALUES ($1, $2, $3, $4, 'dead', 10, 'unknown topic', now(), now() - $5::interval)`,
      [id, topic, randomUUID(), JSON.stringify({ orderId: randomUUID() }), writtenAgo],
    );
    return id;
  };
  const statusOf = async (id: string) =>
    (
      await t.db.pool.query<{ status: string; attempts: number }>(
        `SELECT status, attempts FROM outbox WHERE id = $1`,
        [id],
      )
    ).rows[0];

  it('relays again the dead rows of topics it knows, and leaves the others dead', async () => {
    // parked by an older worker that did not know it (this one does), and one nobody knows
    const known = await park('order.fulfilled');
    const unknown = await park('order.teleported');
    // written within the email reconciler's 6 days, and past them: an older row's email is past
    // sending (each boot relayed such rows: a cancellation mailed two months late)
    const lately = await park('order.cancelled', '5 days 23 hours');
    const old = await park('order.cancelled', '6 days 1 hour');
    const ancient = await park('order.cancelled', '60 days');
    worker = await bootTestWorker(t.config);
    await drain(worker, t.db.pool);
    expect(await statusOf(known)).toMatchObject({ status: 'published' });
    expect(await statusOf(lately)).toMatchObject({ status: 'published' });
    expect(await statusOf(unknown)).toEqual({ status: 'dead', attempts: 10 });
    expect(await statusOf(old)).toEqual({ status: 'dead', attempts: 10 });
    expect(await statusOf(ancient)).toEqual({ status: 'dead', attempts: 10 });
  });
});
