import { Injectable } from '@nestjs/common';
import { In } from 'typeorm';
import { IdGenerator } from '../common/ids';
import { SqlFragment, sql } from '../database/sql-fragment';
import { deleteSelected } from '../database/batched-delete';
import { TransactionHost } from '../database/transaction-host';
import { OutboxEntity, OutboxStatus } from './entities/outbox.entity';
import { OutboxEvents, OutboxRow, OutboxTopic } from './outbox-events';

const PENDING: OutboxStatus = 'pending';

/** The outbox's open rows: how many, and how long the oldest pending one has waited. */
export interface OutboxBacklog {
  pending: number;
  dead: number;
  /** Since the oldest pending row was written, in ms (0 when none is pending). */
  oldestPendingAgeMs: number;
}

/** Keeps the first `max` characters (code points, as PostgreSQL's left() counts them). */
const truncate = (text: string, max: number): string => {
  const chars = Array.from(text);
  return chars.length <= max ? text : chars.slice(0, max).join('');
};

/**
 * The outbox table (OutboxEntity): the only code that reads or writes it. When a row is due
 * (`next_attempt_at`) is set and judged on PostgreSQL's clock, never a process's: a writer whose
 * clock ran ahead would hold its events back, a relay whose clock lagged would not see them due.
 * So is when it was written (`created_at`): what reads it — the backlog's oldest pending age, a
 * claimed row's `ageMs` (the relay's patience with a topic it does not know), the email
 * reconciliation's window on dead rows — measures it against the database's clock, and a writer
 * 90 s behind made every row it wrote read 90 s old.
 */
/** A row's next attempt `delayMs` from now, on the database's clock. */
const dueAfter = (delayMs: number) => () =>
  `statement_timestamp() + interval '${Math.max(0, Math.round(delayMs))} milliseconds'`;

@Injectable()
export class OutboxRepository {
  constructor(
    private readonly tx: TransactionHost,
    private readonly ids: IdGenerator,
  ) {}

  /** Records an event in the caller's transaction: it is published only if that commits. */
  async add<T extends OutboxTopic>(
    topic: T,
    aggregateId: string | null,
    payload: OutboxEvents[T],
  ): Promise<string> {
    const id = this.ids.uuid();
    await this.tx.withManager((m) =>
      m.getRepository(OutboxEntity).insert({
        id,
        topic,
        aggregateId,
        payload: { ...payload },
        status: PENDING,
        attempts: 0,
        nextAttemptAt: () => 'statement_timestamp()',
        createdAt: () => 'statement_timestamp()',
      }),
    );
    return id;
  }

  /**
   * The same INSERT as add(), as a fragment for a caller to run inside its own statement (a CTE
   * of the checkout's order statement), so the event costs no extra round trip. Its placeholders
   * are its own: the statement that splices it in renumbers them (see `sql`).
   */
  statement<T extends OutboxTopic>(
    topic: T,
    aggregateId: string | null,
    payload: OutboxEvents[T],
  ): SqlFragment {
    // raw SQL: hot path of bench:flash-sale (part of the checkout's order statement, sent in
    // COMMIT's message, see docs/BENCHMARKS.md)
    return sql`INSERT INTO outbox (id, topic, aggregate_id, payload, status, attempts, next_attempt_at, created_at)
            VALUES (${this.ids.uuid()}::uuid, ${topic}::text, ${aggregateId}::uuid, ${JSON.stringify(payload)}::jsonb,
                    'pending', 0, statement_timestamp(), statement_timestamp())`;
  }

  /**
   * Leases up to `limit` due rows to this relay: rows locked by another relay are skipped, and a
   * leased row is invisible to others until `leaseMs` passes (so a relay that dies mid-batch
   * only delays its rows). Each claim counts as an attempt (the relay parks a row as dead when
   * an attempt at or past OUTBOX_MAX_ATTEMPTS fails; a claim whose process died is simply leased
   * again — publishing is a queue add, which no payload can crash); the relay gives back
   * uncounted the rows it did not try (the queues unreachable, a database blink in a row's
   * bookkeeping).
   */
  async claimDue(limit: number, leaseMs: number): Promise<OutboxRow[]> {
    return this.tx.query(
      `UPDATE outbox o
          SET attempts = o.attempts + 1,
              next_attempt_at = statement_timestamp() + ($2 || ' milliseconds')::interval
         FROM (SELECT id FROM outbox
                WHERE status = 'pending' AND next_attempt_at <= statement_timestamp()
                ORDER BY next_attempt_at, id
                LIMIT $1
                FOR UPDATE SKIP LOCKED) due
        WHERE o.id = due.id
       RETURNING o.id, o.topic, o.aggregate_id AS "aggregateId", o.payload, o.attempts,
                 (extract(epoch FROM statement_timestamp() - o.created_at) * 1000)::float8 AS "ageMs"`,
      [limit, String(leaseMs)],
    );
  }

  /**
   * `published_at` on the database's clock (the statement's): what reads it — the email
   * reconciler's window and watermark — compares it with the database's `now()`, and a worker
   * whose clock ran behind wrote events into the past, behind a watermark already taken.
   */
  async markPublished(ids: string[]): Promise<void> {
    if (ids.length === 0) return;
    await this.tx.withManager((m) =>
      m
        .getRepository(OutboxEntity)
        .update(
          { id: In(ids), status: PENDING },
          { status: 'published', publishedAt: () => 'statement_timestamp()', lastError: null },
        ),
    );
  }

  /**
   * Gives leased rows back untried (the queue was unreachable): due again at once, and their
   * claim does not count as an attempt — an outage of Redis is not a fault of the event.
   */
  async release(ids: string[]): Promise<void> {
    if (ids.length === 0) return;
    await this.tx.withManager((m) =>
      m.getRepository(OutboxEntity).update(
        { id: In(ids), status: PENDING },
        {
          attempts: () => 'GREATEST(attempts - 1, 0)',
          nextAttemptAt: () => 'statement_timestamp()',
        },
      ),
    );
  }

  /**
   * Gives a leased row back, its claim uncounted, due again after `delayMs` (a topic this worker
   * does not know: a newer one will relay it).
   */
  async deferUncounted(id: string, error: string, delayMs: number): Promise<void> {
    await this.tx.withManager((m) =>
      m.getRepository(OutboxEntity).update(
        { id, status: PENDING },
        {
          attempts: () => 'GREATEST(attempts - 1, 0)',
          lastError: truncate(error, 2000),
          nextAttemptAt: dueAfter(delayMs),
        },
      ),
    );
  }

  /** Schedules a retry after `delayMs`, or parks the row as dead once attempts are spent. */
  async markFailed(id: string, error: string, delayMs: number, dead: boolean): Promise<void> {
    await this.tx.withManager((m) =>
      m.getRepository(OutboxEntity).update(
        { id, status: PENDING },
        {
          status: dead ? 'dead' : PENDING,
          lastError: truncate(error, 2000),
          nextAttemptAt: dueAfter(delayMs),
        },
      ),
    );
  }

  /**
   * Gives dead rows of these topics written in the last `withinMs` (on the database's clock) their
   * attempts back (pending, due now); how many. For a worker that knows them: rows parked by an
   * older one that did not (a rolling deploy), or by a failure since mended. Older rows stay dead.
   */
  async redriveDead(topics: readonly string[], withinMs: number): Promise<number> {
    const result = await this.tx.withManager((m) =>
      m
        .getRepository(OutboxEntity)
        .createQueryBuilder()
        .update()
        .set({ status: PENDING, attempts: 0, nextAttemptAt: () => 'statement_timestamp()' })
        .where({ status: 'dead', topic: In([...topics]) })
        .andWhere(`created_at > statement_timestamp() - make_interval(secs => :withinSeconds)`, {
          withinSeconds: withinMs / 1000,
        })
        .execute(),
    );
    return result.affected ?? 0;
  }

  /**
   * Backlog: pending and dead rows (published ones are history and are purged), and how long the
   * oldest pending row has waited (ms, on the database's clock, as claimDue's `ageMs`; 0 when none
   * is pending) — one statement, the same rows the counts read.
   */
  async countBacklog(): Promise<OutboxBacklog> {
    const [row] = await this.tx.query<OutboxBacklog>(
      `SELECT count(*) FILTER (WHERE status = 'pending')::int AS pending,
              count(*) FILTER (WHERE status = 'dead')::int AS dead,
              COALESCE(GREATEST(extract(epoch FROM statement_timestamp()
                         - min(created_at) FILTER (WHERE status = 'pending')) * 1000, 0), 0)::float8
                AS "oldestPendingAgeMs"
         FROM outbox
        WHERE status IN ('pending', 'dead')`,
    );
    return row;
  }

  /** Deletes published rows older than `before`, one batch; returns how many. */
  async purgePublished(before: Date, batch = 5000): Promise<number> {
    return this.tx.withManager((m) =>
      deleteSelected(
        m,
        OutboxEntity,
        m
          .getRepository(OutboxEntity)
          .createQueryBuilder('old')
          .select('old.id')
          .where('old.status = :published', { published: 'published' satisfies OutboxStatus })
          .andWhere('old.publishedAt < :before', { before })
          .limit(batch),
      ),
    );
  }
}
