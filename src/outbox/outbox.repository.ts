import { Injectable } from '@nestjs/common';
import { Clock } from '../common/time/clock';
import { IdGenerator } from '../common/ids';
import { SqlFragment, sql } from '../database/sql-fragment';
import { TransactionHost } from '../database/transaction-host';
import { OutboxEvents, OutboxRow, OutboxTopic } from './outbox-events';

/** The only place that builds SQL for the outbox table. */
@Injectable()
export class OutboxRepository {
  constructor(
    private readonly tx: TransactionHost,
    private readonly clock: Clock,
    private readonly ids: IdGenerator,
  ) {}

  /** Records an event in the caller's transaction: it is published only if that commits. */
  async add<T extends OutboxTopic>(
    topic: T,
    aggregateId: string | null,
    payload: OutboxEvents[T],
  ): Promise<string> {
    const id = this.ids.uuid();
    const now = this.clock.now();
    await this.tx.query(
      `INSERT INTO outbox (id, topic, aggregate_id, payload, status, attempts, next_attempt_at, created_at)
       VALUES ($1, $2, $3, $4, 'pending', 0, $5, $5)`,
      [id, topic, aggregateId, JSON.stringify(payload), now],
    );
    return id;
  }

  /**
   * The same INSERT as add(), as a fragment for a caller to run inside its own statement (a CTE
   * of the checkout's order statement), so the event costs no extra round trip. Its placeholders
   * are its own: the statement that splices it in renumbers them (see `sql`).
   */
  statement<T extends OutboxTopic>(topic: T, aggregateId: string | null, payload: OutboxEvents[T]): SqlFragment {
    // raw SQL: hot path of bench:flash-sale (part of the checkout's order statement, sent in
    // COMMIT's message, see docs/BENCHMARKS.md)
    const now = this.clock.now();
    return sql`INSERT INTO outbox (id, topic, aggregate_id, payload, status, attempts, next_attempt_at, created_at)
            VALUES (${this.ids.uuid()}::uuid, ${topic}::text, ${aggregateId}::uuid, ${JSON.stringify(payload)}::jsonb,
                    'pending', 0, ${now}::timestamptz, ${now}::timestamptz)`;
  }

  /**
   * Leases up to `limit` due rows to this relay: rows locked by another relay are skipped, and a
   * leased row is invisible to others until `leaseMs` passes (so a relay that dies mid-batch
   * only delays its rows). Each claim counts as an attempt.
   */
  async claimDue(limit: number, leaseMs: number): Promise<OutboxRow[]> {
    const now = this.clock.now();
    return this.tx.query(
      `UPDATE outbox o
          SET attempts = o.attempts + 1,
              next_attempt_at = $2::timestamptz + ($3 || ' milliseconds')::interval
         FROM (SELECT id FROM outbox
                WHERE status = 'pending' AND next_attempt_at <= $2
                ORDER BY next_attempt_at, id
                LIMIT $1
                FOR UPDATE SKIP LOCKED) due
        WHERE o.id = due.id
       RETURNING o.id, o.topic, o.aggregate_id AS "aggregateId", o.payload, o.attempts`,
      [limit, now, String(leaseMs)],
    );
  }

  async markPublished(ids: string[]): Promise<void> {
    if (ids.length === 0) return;
    await this.tx.query(
      `UPDATE outbox SET status = 'published', published_at = $2, last_error = NULL
        WHERE id = ANY($1::uuid[]) AND status = 'pending'`,
      [ids, this.clock.now()],
    );
  }

  /**
   * Gives leased rows back untried (the queue was unreachable): due again at `at`, and their
   * claim does not count as an attempt — an outage of Redis is not a fault of the event.
   */
  async release(ids: string[], at: Date): Promise<void> {
    if (ids.length === 0) return;
    await this.tx.query(
      `UPDATE outbox SET attempts = GREATEST(attempts - 1, 0), next_attempt_at = $2
        WHERE id = ANY($1::uuid[]) AND status = 'pending'`,
      [ids, at],
    );
  }

  /** Schedules a retry after `delayMs`, or parks the row as dead once attempts are spent. */
  async markFailed(id: string, error: string, delayMs: number, dead: boolean): Promise<void> {
    await this.tx.query(
      `UPDATE outbox
          SET status = CASE WHEN $4 THEN 'dead' ELSE status END,
              last_error = left($2, 2000),
              next_attempt_at = $3
        WHERE id = $1 AND status = 'pending'`,
      [id, error, new Date(this.clock.now().getTime() + delayMs), dead],
    );
  }

  /** Backlog: pending and dead rows (published ones are history and are purged). */
  async countBacklog(): Promise<{ pending: number; dead: number }> {
    const rows: { status: 'pending' | 'dead'; n: string }[] = await this.tx.query(
      `SELECT status, count(*)::text AS n FROM outbox WHERE status <> 'published' GROUP BY status`,
    );
    const counts = { pending: 0, dead: 0 };
    for (const r of rows) counts[r.status] = Number(r.n);
    return counts;
  }

  /** Deletes published rows older than `before`, in batches. */
  async purgePublished(before: Date, batch = 5000): Promise<number> {
    const rows: unknown[] = await this.tx.query(
      `DELETE FROM outbox WHERE id IN (
         SELECT id FROM outbox WHERE status = 'published' AND published_at < $1 LIMIT $2)
       RETURNING 1`,
      [before, batch],
    );
    return rows.length;
  }
}
