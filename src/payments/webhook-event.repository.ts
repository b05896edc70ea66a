import { Injectable } from '@nestjs/common';
import { IsNull } from 'typeorm';
import { deleteSelected } from '../database/batched-delete';
import { jsonbStorable, textStorable } from '../database/jsonb-text';
import { TransactionHost } from '../database/transaction-host';
import { WebhookEventEntity } from './entities/webhook-event.entity';
import type { EventOutcome } from './payment-finalizer.service';

/**
 * What processing an event did, as `webhook_events.outcome` records it: its EventOutcome's kind,
 * or `unknown-intent` for one given up after its intent was unknown to the provider for 30 days.
 */
export type RecordedOutcome = Exclude<EventOutcome['kind'], 'unknown-event'> | 'unknown-intent';

export interface WebhookEvent {
  id: string;
  type: string;
  intentId: string | null;
  processedAt: Date | null;
  receivedAt: Date;
}

/** The verified webhook inbox, one row per provider event id. */
@Injectable()
export class WebhookEventRepository {
  constructor(private readonly tx: TransactionHost) {}

  /**
   * Stores a verified event once; false for a duplicate id. The payload as PostgreSQL can store
   * it (jsonbStorable: a NUL or a lone surrogate in a string becomes U+FFFD). The primary key decides, also
   * between two concurrent deliveries of one event: the second insert waits for the first to
   * commit and then inserts nothing (ON CONFLICT DO NOTHING), so only one of them enqueues it.
   */
  async record(e: {
    id: string;
    type: string;
    intentId: string | null;
    payload: object;
    at: Date;
  }): Promise<boolean> {
    const result = await this.tx.withManager((m) =>
      m
        .createQueryBuilder()
        .insert()
        .into(WebhookEventEntity)
        .values({
          // (the id is checked as ASCII before (EVENT_ID); the type and intent id are the
          // provider's, never holding a NUL — if one did, PostgreSQL's text would refuse the event
          // (22021) on every delivery: kept storable)
          id: e.id,
          type: textStorable(e.type),
          intentId: e.intentId === null ? null : textStorable(e.intentId),
          // a NUL in text the customer typed (a billing name) would make jsonb refuse the event on
          // every delivery; the payload is kept for the record (only a dispute's object is read
          // back: objectOf)
          payload: jsonbStorable(e.payload),
          receivedAt: e.at,
        })
        .orIgnore()
        .returning('id')
        .execute(),
    );
    return Array.isArray(result.raw) && result.raw.length > 0;
  }

  /**
   * Deletes up to `batch` events processed before `before`: their payload (the provider's copy of
   * the customer's payment details) is never read once processed, and the provider stops
   * redelivering an event after three days. Returns how many went.
   */
  async purgeProcessed(before: Date, batch = 5000): Promise<number> {
    return this.tx.withManager((m) =>
      deleteSelected(
        m,
        WebhookEventEntity,
        m
          .getRepository(WebhookEventEntity)
          .createQueryBuilder('e')
          .select('e.id')
          .where('e.processedAt < :before', { before })
          .limit(batch),
      ),
    );
  }

  /** The object the event is about (its `data.object`), as stored; null if it has none. */
  async objectOf(id: string): Promise<unknown> {
    const rows = await this.tx.withManager((m) =>
      m
        .getRepository(WebhookEventEntity)
        .createQueryBuilder('e')
        .select(`e.payload -> 'data' -> 'object'`, 'object')
        .where('e.id = :id', { id })
        .getRawMany<{ object: unknown }>(),
    );
    return rows[0]?.object ?? null;
  }

  find(id: string): Promise<WebhookEvent | null> {
    return this.tx.withManager((m) =>
      m.getRepository(WebhookEventEntity).findOne({
        select: { id: true, type: true, intentId: true, processedAt: true, receivedAt: true },
        where: { id },
      }),
    );
  }

  /**
   * Events received before `before` and still not processed (the sweep's work), oldest first —
   * an event the sweep tried and failed (noteSweepFailed) counts from that try, so one that keeps
   * failing goes to the back of the line rather than holding its front.
   */
  async findUnprocessed(before: Date, limit: number): Promise<string[]> {
    const rows = await this.tx.withManager((m) =>
      m
        .getRepository(WebhookEventEntity)
        .createQueryBuilder('e')
        .select('e.id', 'id')
        .where('e.processed_at IS NULL')
        .andWhere('COALESCE(e.swept_at, e.received_at) < :before', { before })
        .orderBy('COALESCE(e.swept_at, e.received_at)', 'ASC')
        .limit(limit)
        .getRawMany<{ id: string }>(),
    );
    return rows.map((r) => r.id);
  }

  /** The sweep tried the event and it failed again: it goes to the back of the sweep's line. */
  async noteSweepFailed(id: string, at: Date): Promise<void> {
    await this.tx.withManager((m) =>
      m.getRepository(WebhookEventEntity).update({ id, processedAt: IsNull() }, { sweptAt: at }),
    );
  }

  /**
   * The first processing stands, its time and outcome (a rerun of the event's job moves neither):
   * `outcome` is what an operator looks for (`orphan`: about one of our intents whose order the
   * database does not have). True when this call marked it.
   */
  async markProcessed(id: string, at: Date, outcome: RecordedOutcome): Promise<boolean> {
    const result = await this.tx.withManager((m) =>
      m
        .getRepository(WebhookEventEntity)
        .update({ id, processedAt: IsNull() }, { processedAt: at, outcome }),
    );
    return (result.affected ?? 0) > 0;
  }
}
