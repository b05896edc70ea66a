import { Injectable } from '@nestjs/common';
import { inboxKey } from '../common/email';
import { TransactionHost } from '../database/transaction-host';
import { EmailDeliveryEntity } from './entities/email-delivery.entity';
import { REVERSED_AT_PROVIDER } from '../payments/payment-reader';
import { EMAIL_OF_TOPIC, EmailKind } from './email-job';

export interface DeliveryClaim {
  id: string;
  orderId: string;
  kind: EmailKind;
  ref: string;
  recipient: string;
  messageId: string;
  now: Date;
}

/** Advisory-lock class of an inbox's allowance decisions (two-int4 key space); "EA" in ASCII. */
const INBOX_LOCK_CLASS = 0x4541;
/** Advisory-lock class of the shop-wide budget for unproven inboxes (one key, 0); "EB" in ASCII. */
const UNPROVEN_BUDGET_LOCK_CLASS = 0x4542;

/** An email an outbox event owes and no delivery has recorded as sent (see findUnsent). */
export interface OwedEmail {
  outboxId: string;
  /** When its event was published (published events) or written (dead ones). */
  eventAt: Date;
  /**
   * The same instant as PostgreSQL's text, microseconds kept: the page's key. Through a `Date`
   * (milliseconds) the rows of one millisecond after the page's last sorted after it again —
   * every relay batch is stamped with one instant — so each page re-read them, and a page all of
   * one millisecond never ended the pass.
   */
  eventKey: string;
  orderId: string;
  kind: EmailKind;
  /** The refund's id for refund emails, '' otherwise. */
  ref: string;
}

/**
 * A text expression as a uuid, or NULL when it is not one: a malformed outbox payload must not
 * make every reconciliation pass fail (a bare cast would throw for the whole statement).
 */
const asUuid = (text: string): string =>
  `CASE WHEN ${text} ~ '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$' THEN (${text})::uuid END`;

/** How much of a failed attempt's error is kept (characters). */
const MAX_ERROR_LENGTH = 2000;

/** Email deliveries: the claim before a send, the 'sent' record after it. */
@Injectable()
export class EmailDeliveryRepository {
  constructor(private readonly tx: TransactionHost) {}

  /**
   * Insert-or-claim in one statement; the caller holds the delivery's lock (EmailDeliveryLocks).
   * Inserts the delivery as 'sending' claimed now, or — when it exists and is still 'sending' —
   * takes it over: under the lock, a 'sending' row is abandoned (a failed attempt released it,
   * or its worker died and PostgreSQL released that worker's lock).
   * Returns the claim's attempt number (its token), or null when the delivery was already sent.
   *
   * Explicit SQL: the query builder's upsert cannot say `DO UPDATE SET attempts = attempts + 1
   * … WHERE status = 'sending'`, and it is this one statement that decides between a first
   * claim, a takeover and an already-sent delivery.
   */
  async claim(c: DeliveryClaim): Promise<{ id: string; attempt: number } | null> {
    const rows = await this.tx.query<{ id: string; attempts: number }>(
      `INSERT INTO email_deliveries AS d
              (id, order_id, kind, ref, recipient, inbox, status, attempts, message_id, claimed_at,
               created_at, updated_at)
       VALUES ($1, $2, $3, $4, $5, $8, 'sending', 1, $6, $7, $7, $7)
       ON CONFLICT (order_id, kind, ref) DO UPDATE
          SET attempts = d.attempts + 1,
              claimed_at = EXCLUDED.claimed_at,
              recipient = EXCLUDED.recipient,
              inbox = EXCLUDED.inbox,
              updated_at = EXCLUDED.updated_at
        WHERE d.status = 'sending'
       RETURNING d.id, d.attempts`,
      [c.id, c.orderId, c.kind, c.ref, c.recipient, c.messageId, c.now, inboxKey(c.recipient)],
    );
    const row = rows[0];
    return row ? { id: row.id, attempt: row.attempts } : null;
  }

  /**
   * Emails owed and not sent: outbox events that owe one (EMAIL_OF_TOPIC), published between
   * `windowMs` and `graceMs` ago (on the database's clock) — or, with `events: 'dead'`, parked as
   * dead by the relay (never published: written that long ago) — with no delivery recorded as
   * sent — and only those the email job would send (the order and its customer exist; a refund
   * email's refund belongs to the order and did not fail, a reversal's was reversed), so a job
   * that rightly skipped one is not added back forever (a confirmation the job finds overtaken by
   * a refund is listed, and its job added back once: it records it `suppressed`, which is final).
   * Keyset-paged by (published_at, id) after `after`.
   */
  findUnsent(opts: {
    windowMs: number;
    graceMs: number;
    limit: number;
    events?: 'published' | 'dead';
    after?: { eventKey: string; outboxId: string };
    /** Events before this were all settled when last looked at (EmailReconciler's watermark). */
    notBefore?: Date;
  }): Promise<OwedEmail[]> {
    const dead = opts.events === 'dead';
    // each through its own partial index: outbox_published_idx, outbox_dead_idx
    const at = dead ? 'o.created_at' : 'o.published_at';
    return this.tx.query<OwedEmail>(
      `SELECT o.id AS "outboxId", ${at} AS "eventAt", ${at}::text AS "eventKey", ord.id AS "orderId",
              $1::jsonb ->> o.topic AS kind, coalesce(o.payload ->> 'refundId', '') AS ref
         FROM outbox o
         JOIN orders ord ON ord.id = ${asUuid(`o.payload ->> 'orderId'`)}
         JOIN users u ON u.id = ord.user_id
         LEFT JOIN refunds r ON o.topic IN ('order.refunded', 'order.refund-reversed')
               AND r.id = ${asUuid(`o.payload ->> 'refundId'`)}
         LEFT JOIN email_deliveries d
                ON d.order_id = ord.id AND d.kind = $1::jsonb ->> o.topic
               AND d.ref = coalesce(o.payload ->> 'refundId', '')
        WHERE o.status = '${dead ? 'dead' : 'published'}' AND $1::jsonb ? o.topic
          AND ${at} >= now() - ($2::text || ' milliseconds')::interval
          AND ${at} < now() - ($3::text || ' milliseconds')::interval
          AND ${at} >= $7::timestamptz
          AND (${at}, o.id) > ($4::timestamptz, $5::uuid)
          AND (d.status IS NULL OR d.status = 'sending')
          AND (o.topic <> 'order.refunded' OR (r.order_id = ord.id AND r.status <> 'failed'))
          AND (o.topic <> 'order.refund-reversed' OR (r.order_id = ord.id AND r.failure = '${REVERSED_AT_PROVIDER}'))
        ORDER BY ${at}, o.id
        LIMIT $6`,
      [
        JSON.stringify(EMAIL_OF_TOPIC),
        String(opts.windowMs),
        String(opts.graceMs),
        opts.after?.eventKey ?? new Date(0),
        opts.after?.outboxId ?? '00000000-0000-0000-0000-000000000000',
        opts.limit,
        opts.notBefore ?? new Date(0),
      ],
    );
  }

  /** The database's clock (the one findUnsent's window is on). */
  databaseNow(): Promise<Date> {
    return this.tx.databaseNow();
  }

  find(orderId: string, kind: EmailKind, ref: string): Promise<EmailDeliveryEntity | null> {
    return this.tx.withManager((m) =>
      m.getRepository(EmailDeliveryEntity).findOneBy({ orderId, kind, ref }),
    );
  }

  /**
   * Records a delivery nobody has claimed as 'suppressed' (final: never sent nor owed), unless a
   * row exists; the caller holds the delivery's lock, so no attempt claims it meanwhile. The
   * delivery's row as it stands afterwards.
   */
  async suppressUnclaimed(
    c: DeliveryClaim & { reason: string },
  ): Promise<EmailDeliveryEntity | null> {
    await this.tx.query(
      `INSERT INTO email_deliveries
              (id, order_id, kind, ref, recipient, inbox, status, attempts, message_id, last_error,
               created_at, updated_at)
       VALUES ($1, $2, $3, $4, $5, $6, 'suppressed', 0, $7, $8, $9, $9)
       ON CONFLICT (order_id, kind, ref) DO NOTHING`,
      [
        c.id,
        c.orderId,
        c.kind,
        c.ref,
        c.recipient,
        inboxKey(c.recipient),
        c.messageId,
        c.reason,
        c.now,
      ],
    );
    return this.find(c.orderId, c.kind, c.ref);
  }

  /**
   * Final: a sent delivery is never claimed again. Recorded whenever it is still 'sending' —
   * the mail server has the message, whichever attempt holds the claim now. True when the
   * delivery is sent and still this attempt's (no other attempt took it over meanwhile, which
   * then needs the transport's own record of the send), also when this attempt's earlier try
   * committed but its answer was lost.
   */
  async markSent(id: string, attempt: number, at: Date): Promise<boolean> {
    return this.tx.withManager(async (m) => {
      const deliveries = m.getRepository(EmailDeliveryEntity);
      await deliveries.update(
        { id, status: 'sending' },
        { status: 'sent', sentAt: at, claimedAt: null, updatedAt: at },
      );
      const row = await deliveries.findOne({
        select: { status: true, attempts: true },
        where: { id },
      });
      return row?.status === 'sent' && row.attempts === attempt;
    });
  }

  /**
   * Over an allowance of `limit` `kind` emails per inbox since `since`: the claimed delivery is
   * recorded suppressed (answers true), or left to be sent (false). Counted are the inbox's emails
   * sent since then and the others claimed or tried since then and not yet settled (another
   * worker's send in flight, or one owed a retry — however old the delivery), under a transaction lock on the inbox: workers deciding at
   * once for one inbox decide one after the other, each seeing the others' claims — so N workers
   * can never each find room for one more and send N past the allowance.
   *
   * The inbox's owner — the oldest of its accounts that has paid (a receipt was sent to it) — has
   * an allowance of its own, and the other accounts share one: a stranger who registered variants
   * of a customer's address (`v.i.c+x@gmail.com` for `vic@gmail.com`, each an account) and
   * cancelled ten orders had silenced that customer's own cancellation emails for the day, every
   * day (mail review). Before anyone has paid, every account shares the one (a stranger's
   * accounts, unpaid, never make a second); becoming the owner costs a purchase.
   */
  async suppressOverAllowance(
    claim: { id: string; attempt: number; recipient: string; kind: EmailKind },
    limit: number,
    since: Date,
    reason: string,
    at: Date,
  ): Promise<boolean> {
    const inbox = inboxKey(claim.recipient);
    return this.tx.run(async () => {
      const held = await this.tx.withManager(async (m) => {
        await m.query(`SELECT pg_advisory_xact_lock(${INBOX_LOCK_CLASS}, hashtext($1::text))`, [
          inbox,
        ]);
        const rows = await m.query<{ held: number }[]>(
          `WITH owner AS (
             SELECT o.user_id
               FROM email_deliveries d JOIN orders o ON o.id = d.order_id JOIN users u ON u.id = o.user_id
              WHERE d.inbox = $1 AND d.kind = 'payment_receipt' AND d.status = 'sent'
              ORDER BY u.created_at, u.id
              LIMIT 1
           ), mine AS (
             SELECT o.user_id FROM email_deliveries d JOIN orders o ON o.id = d.order_id WHERE d.id = $3
           )
           SELECT count(*)::int AS held
             FROM email_deliveries d JOIN orders o ON o.id = d.order_id
            WHERE d.inbox = $1 AND d.kind = $2 AND d.id <> $3
              AND ((d.status = 'sent' AND d.sent_at >= $4) OR (d.status = 'sending' AND d.updated_at >= $4))
              -- the owner's own emails, or the others' (all of them when the inbox has no owner)
              AND (o.user_id = (SELECT user_id FROM owner)) IS NOT DISTINCT FROM
                  ((SELECT user_id FROM mine) = (SELECT user_id FROM owner))`,
          [inbox, claim.kind, claim.id, since],
        );
        return rows[0]?.held ?? 0;
      });
      if (held < limit) return false;
      await this.markSuppressed(claim.id, claim.attempt, reason, at);
      return true;
    });
  }

  /** Whether a payment receipt was sent to inbox $1 (proven): through email_deliveries_inbox_sent_idx. */
  static readonly PROVEN_SQL = `SELECT EXISTS (SELECT 1 FROM email_deliveries
    WHERE inbox = $1 AND kind = 'payment_receipt' AND status = 'sent') AS proven`;

  /**
   * The budget's count: deliveries let go to an unproven inbox (stamped `unproven_at`) since $2,
   * but the claim deciding ($1) — whatever became of them (sent, in flight, refused by the mail
   * server: each was a message sent to an address nobody had proven). Through
   * `email_deliveries_unproven_idx`, which holds the stamped rows alone.
   */
  static readonly UNPROVEN_COUNT_SQL = `SELECT count(*)::int AS held FROM email_deliveries
    WHERE unproven_at IS NOT NULL AND unproven_at >= $2 AND id <> $1`;

  /**
   * The shop-wide daily budget of cancellation emails to inboxes nobody has proven — an inbox is
   * proven once a payment receipt was sent to it (the owner of suppressOverAllowance). A claim to a
   * proven inbox is not counted nor held (answers false). Otherwise, under a transaction lock on
   * the budget (one for the whole shop: workers deciding at once decide one after the other, each
   * seeing the others' stamps), the claim is let go and stamped `unproven_at` while fewer than
   * `limit` were let go since `since` (false), or recorded suppressed (true). A claim stamped
   * within the window already (a retry of one let go) keeps its place.
   */
  async suppressOverUnprovenBudget(
    claim: { id: string; attempt: number; recipient: string },
    limit: number,
    since: Date,
    reason: string,
    at: Date,
  ): Promise<boolean> {
    // a receipt once sent stays sent: asked outside the lock, so proven inboxes never wait on it
    const proven = await this.tx.query<{ proven: boolean }>(EmailDeliveryRepository.PROVEN_SQL, [
      inboxKey(claim.recipient),
    ]);
    if (proven[0]?.proven) return false;
    return this.tx.run(async () => {
      const held = await this.tx.withManager(async (m) => {
        await m.query(`SELECT pg_advisory_xact_lock(${UNPROVEN_BUDGET_LOCK_CLASS}, 0)`);
        const own = await m.query<{ unproven_at: Date | null }[]>(
          `SELECT unproven_at FROM email_deliveries WHERE id = $1`,
          [claim.id],
        );
        const stamped = own[0]?.unproven_at;
        if (stamped && stamped >= since) return null;
        const rows = await m.query<{ held: number }[]>(EmailDeliveryRepository.UNPROVEN_COUNT_SQL, [
          claim.id,
          since,
        ]);
        const count = rows[0]?.held ?? 0;
        if (count < limit)
          await m
            .getRepository(EmailDeliveryEntity)
            .update(
              { id: claim.id, attempts: claim.attempt, status: 'sending' },
              { unprovenAt: at },
            );
        return count;
      });
      if (held === null || held < limit) return false;
      await this.markSuppressed(claim.id, claim.attempt, reason, at);
      return true;
    });
  }

  /**
   * A claimed delivery that is not to be sent (over an allowance): final, never owed again. Whether
   * it was still that attempt's claim, 'sending' (and is suppressed now).
   */
  async markSuppressed(id: string, attempt: number, reason: string, at: Date): Promise<boolean> {
    const result = await this.tx.withManager((m) =>
      m
        .getRepository(EmailDeliveryEntity)
        .update(
          { id, attempts: attempt, status: 'sending' },
          { status: 'suppressed', claimedAt: null, lastError: reason, updatedAt: at },
        ),
    );
    return (result.affected ?? 0) > 0;
  }

  /**
   * After the mail server refused the email for good (a 5xx): final, never claimed or owed
   * again — only if it is still this attempt's claim.
   */
  async markRejected(id: string, attempt: number, error: string, at: Date): Promise<void> {
    await this.tx.withManager((m) =>
      m.getRepository(EmailDeliveryEntity).update(
        { id, attempts: attempt, status: 'sending' },
        {
          status: 'rejected',
          claimedAt: null,
          lastError: Array.from(error).slice(0, MAX_ERROR_LENGTH).join(''),
          updatedAt: at,
        },
      ),
    );
  }

  /**
   * After a failed send: records the error and frees the claim for the next attempt — only if
   * it is still this attempt's claim (a slow attempt must not free a newer claimer's).
   */
  async release(id: string, attempt: number, error: string, at: Date): Promise<void> {
    await this.tx.withManager((m) =>
      m.getRepository(EmailDeliveryEntity).update(
        { id, attempts: attempt, status: 'sending' },
        {
          claimedAt: null,
          lastError: Array.from(error).slice(0, MAX_ERROR_LENGTH).join(''),
          updatedAt: at,
        },
      ),
    );
  }
}
