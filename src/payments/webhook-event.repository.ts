import { Injectable } from '@nestjs/common';
import { IsNull, LessThan } from 'typeorm';
import { TransactionHost } from '../database/transaction-host';
import { WebhookEventEntity } from './entities/webhook-event.entity';

export interface WebhookEvent {
  id: string;
  type: string;
  intentId: string | null;
  processedAt: Date | null;
}

/** The verified webhook inbox, one row per provider event id. */
@Injectable()
export class WebhookEventRepository {
  constructor(private readonly tx: TransactionHost) {}

  /**
   * Stores a verified event once; false for a duplicate id. The primary key decides, also
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
          id: e.id,
          type: e.type,
          intentId: e.intentId,
          payload: e.payload,
          receivedAt: e.at,
        })
        .orIgnore()
        .returning('id')
        .execute(),
    );
    return Array.isArray(result.raw) && result.raw.length > 0;
  }

  find(id: string): Promise<WebhookEvent | null> {
    return this.tx.withManager((m) =>
      m.getRepository(WebhookEventEntity).findOne({
        select: { id: true, type: true, intentId: true, processedAt: true },
        where: { id },
      }),
    );
  }

  /** Events received before `before` and still not processed, oldest first (the sweep's work). */
  async findUnprocessed(before: Date, limit: number): Promise<string[]> {
    const rows = await this.tx.withManager((m) =>
      m.getRepository(WebhookEventEntity).find({
        select: { id: true },
        where: { processedAt: IsNull(), receivedAt: LessThan(before) },
        order: { receivedAt: 'ASC' },
        take: limit,
      }),
    );
    return rows.map((r) => r.id);
  }

  /** The first processing time stands (a rerun of the event's job does not move it). */
  async markProcessed(id: string, at: Date): Promise<void> {
    await this.tx.withManager((m) =>
      m
        .getRepository(WebhookEventEntity)
        .update({ id, processedAt: IsNull() }, { processedAt: at }),
    );
  }
}
