import { Queue } from 'bullmq';
import type Redis from 'ioredis';
import { Client } from 'pg';
import type { FakeStripe } from '../../test/support/fake-stripe';
import type { MailSink } from './mail-sink';
import { QUEUES } from '../../src/queue/queues';
import { Exchange } from './http';
import type { Workload } from './workload';

export interface Check {
  name: string;
  ok: boolean;
  detail: string;
  /** Shown for the record, never a failure (and not counted as passed). */
  info?: boolean;
}

const PAID = ['PAID', 'CONFIRMED', 'FULFILLED', 'PARTIALLY_REFUNDED', 'REFUNDED'];
const OPEN = ['CREATED', 'INVENTORY_RESERVED', 'PAYMENT_PENDING'];
/** A request that started or ended this close to an API-affecting fault window is excused. */
export const GRACE_MS = 5000;

const n = (v: unknown) => Number(v ?? 0);
const sample = (xs: string[], k = 4) =>
  xs.length > k ? `${xs.slice(0, k).join('; ')}; … (${xs.length} in all)` : xs.join('; ');
const show = (e: Exchange) =>
  `#${e.seq} ${e.label} api${e.api === 0 ? 'A' : 'B'} t=${(e.start / 1000).toFixed(1)}–${(e.end / 1000).toFixed(1)}s ` +
  `${e.status || e.error}${e.code ? ` ${e.code}` : ''}${e.body?.detail ? ` "${String(e.body.detail).slice(0, 120)}"` : ''}`;

export class Inspector {
  readonly queues: Queue[];

  constructor(
    private readonly db: Client,
    redis: { host: string; port: number },
    prefix: string,
  ) {
    this.queues = QUEUES.map(
      (name) => new Queue(name, { connection: { ...redis, maxRetriesPerRequest: 1 }, prefix }),
    );
  }

  async close(): Promise<void> {
    await Promise.all(this.queues.map((q) => q.close().catch(() => undefined)));
  }

  private async q1(sql: string, params: unknown[] = []): Promise<any[]> {
    return (await this.db.query(sql, params)).rows;
  }

  async queueState(): Promise<{ busy: string[]; failed: string[] }> {
    const busy: string[] = [];
    const failed: string[] = [];
    for (const q of this.queues) {
      const c = await q.getJobCounts(
        'waiting',
        'active',
        'prioritized',
        'paused',
        'waiting-children',
        'failed',
      );
      const waiting =
        n(c.waiting) + n(c.active) + n(c.prioritized) + n(c.paused) + n(c['waiting-children']);
      if (waiting > 0) busy.push(`${q.name}: ${waiting} waiting/active`);
      // every delayed job but the schedulers' next runs (ids `repeat:<scheduler>:<ms>`): a
      // reservation's expiry, a refund's settling, an email's retry are all work still to come
      const client = (await q.client) as unknown as Redis;
      const delayed = (await client.zrange(q.keys.delayed, 0, -1)).filter(
        (id) => !id.startsWith('repeat:'),
      );
      if (delayed.length > 0) busy.push(`${q.name}: ${delayed.length} delayed jobs`);
      if (n(c.failed) > 0) {
        const jobs = await q.getFailed(0, 3);
        failed.push(
          `${q.name}: ${n(c.failed)} failed (${jobs.map((j) => `${j.name}: ${j.failedReason}`).join(' | ')})`,
        );
      }
    }
    return { busy, failed };
  }

  /** What still keeps the system from having converged (empty = converged). */
  async unsettled(): Promise<string[]> {
    const out: string[] = [];
    const [r] = await this.q1(
      `
      SELECT
        (SELECT count(*) FROM outbox WHERE status = 'pending') AS outbox,
        (SELECT count(*) FROM orders WHERE status = ANY($1)) AS overdue,
        (SELECT count(*) FROM orders WHERE status = 'PAID' AND updated_at < now() - interval '5 seconds') AS paid,
        (SELECT count(*) FROM refunds WHERE status = 'pending') AS refunds,
        (SELECT count(*) FROM email_deliveries WHERE status = 'sending') AS emails,
        (SELECT count(*) FROM webhook_events WHERE processed_at IS NULL) AS webhooks,
        (SELECT count(*) FROM idempotency_keys WHERE state = 'in_progress') AS keys`,
      [OPEN],
    );
    if (n(r.outbox)) out.push(`${r.outbox} outbox rows pending`);
    // every open order: with the drill's 20 s reservations, each is paid or expires shortly
    if (n(r.overdue)) out.push(`${r.overdue} unpaid orders still open`);
    if (n(r.paid)) out.push(`${r.paid} orders PAID but not CONFIRMED`);
    if (n(r.refunds)) out.push(`${r.refunds} refunds pending`);
    if (n(r.emails)) out.push(`${r.emails} email deliveries 'sending'`);
    if (n(r.webhooks)) out.push(`${r.webhooks} webhook events unprocessed`);
    if (n(r.keys)) out.push(`${r.keys} idempotency keys in progress`);
    out.push(...(await this.queueState()).busy);
    return out;
  }

  async checks(
    w: Workload,
    fake: FakeStripe,
    smtp: MailSink,
    convergence: { ok: boolean; ms: number; left: string[] },
  ): Promise<Check[]> {
    const checks: Check[] = [];
    const add = (name: string, problems: string[], okDetail: string) =>
      checks.push({
        name,
        ok: problems.length === 0,
        detail: problems.length ? sample(problems) : okDetail,
      });
    const ex = w.rec.exchanges;

    checks.push({
      name: 'converged (outbox, queues, orders, refunds, emails, keys) within bound',
      ok: convergence.ok,
      detail: convergence.ok
        ? `in ${(convergence.ms / 1000).toFixed(1)} s`
        : `after ${(convergence.ms / 1000).toFixed(0)} s still: ${sample(convergence.left)}`,
    });

    // ---- stock: one snapshot for counters, ledger and orders
    await this.db.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
    const stock = await this.q1(
      `SELECT i.product_id AS id, i.on_hand, i.reserved,
         (SELECT coalesce(sum(on_hand_delta), 0) FROM stock_movements m WHERE m.product_id = i.product_id) AS ledger_on_hand,
         (SELECT coalesce(sum(reserved_delta), 0) FROM stock_movements m WHERE m.product_id = i.product_id) AS ledger_reserved,
         (SELECT coalesce(sum(on_hand_delta), 0) FROM stock_movements m WHERE m.product_id = i.product_id AND kind = 'initial') AS initial,
         (SELECT coalesce(sum(on_hand_delta), 0) FROM stock_movements m WHERE m.product_id = i.product_id AND kind = 'adjust') AS adjusted,
         (SELECT coalesce(sum(oi.quantity), 0) FROM order_items oi JOIN orders o ON o.id = oi.order_id
           WHERE oi.product_id = i.product_id AND o.status = ANY($1)) AS paid_units,
         (SELECT coalesce(sum(oi.quantity), 0) FROM order_items oi JOIN orders o ON o.id = oi.order_id
           WHERE oi.product_id = i.product_id AND o.status = ANY($2)) AS open_units
       FROM inventory_items i`,
      [PAID, OPEN],
    );
    const perOrder = await this.q1(
      `SELECT o.id, o.status, oi.product_id, oi.quantity,
              coalesce(sum(m.reserved_delta), 0) AS reserved, coalesce(sum(m.on_hand_delta), 0) AS on_hand,
              count(*) FILTER (WHERE m.kind = 'commit') AS commits, count(*) FILTER (WHERE m.kind = 'release') AS releases
         FROM orders o JOIN order_items oi ON oi.order_id = o.id
         LEFT JOIN stock_movements m ON m.order_id = o.id AND m.product_id = oi.product_id
        GROUP BY o.id, o.status, oi.product_id, oi.quantity`,
    );
    await this.db.query('COMMIT');

    for (const p of w.products) {
      const s = stock.find((r) => r.id === p.id);
      if (!s) {
        add(
          `stock ${p.sku}: on_hand = initial + adjustments − paid units; reserved = open units`,
          ['no inventory row'],
          '',
        );
        continue;
      }
      const sent = w.adjustmentsSent.filter((a) => a.productId === p.id);
      const ok200 = sent.filter((a) => a.answered === 200).reduce((t, a) => t + a.delta, 0);
      const unknown = sent.filter((a) => a.answered === 'unknown');
      const problems: string[] = [];
      if (n(s.initial) !== p.initialStock)
        problems.push(`initial ledger ${s.initial} ≠ created ${p.initialStock}`);
      const adj = n(s.adjusted);
      if (adj !== ok200 && !unknown.length)
        problems.push(`ledger adjustments ${adj} ≠ confirmed (200) adjustments ${ok200}`);
      const expectOnHand = p.initialStock + adj - n(s.paid_units);
      if (n(s.on_hand) !== expectOnHand)
        problems.push(
          `on_hand ${s.on_hand} ≠ ${p.initialStock} + ${adj} − ${s.paid_units} = ${expectOnHand}`,
        );
      if (n(s.reserved) !== n(s.open_units))
        problems.push(`reserved ${s.reserved} ≠ units of open unpaid orders ${s.open_units}`);
      add(
        `stock ${p.sku}: on_hand = initial + adjustments − paid units; reserved = open units`,
        problems,
        `on_hand ${s.on_hand} = ${p.initialStock} + ${adj} − ${s.paid_units}; reserved ${s.reserved} = ${s.open_units}`,
      );
    }
    add(
      'stock counters agree with the ledger (stock_movements sums)',
      stock
        .filter(
          (s) => n(s.on_hand) !== n(s.ledger_on_hand) || n(s.reserved) !== n(s.ledger_reserved),
        )
        .map(
          (s) =>
            `${s.id}: on_hand ${s.on_hand}/ledger ${s.ledger_on_hand}, reserved ${s.reserved}/ledger ${s.ledger_reserved}`,
        ),
      `${stock.length} products`,
    );
    add(
      'never oversold: 0 ≤ reserved ≤ on_hand',
      stock
        .filter((s) => n(s.reserved) < 0 || n(s.reserved) > n(s.on_hand) || n(s.on_hand) < 0)
        .map((s) => `${s.id}: ${s.reserved}/${s.on_hand}`),
      'all products',
    );
    add(
      'no reservation held by a cancelled/expired/failed order',
      perOrder
        .filter((r) => r.status === 'CANCELLED' && (n(r.reserved) !== 0 || n(r.on_hand) !== 0))
        .map(
          (r) =>
            `order ${r.id} product ${r.product_id}: reserved Δ ${r.reserved}, on_hand Δ ${r.on_hand}`,
        ),
      `${new Set(perOrder.filter((r) => r.status === 'CANCELLED').map((r) => r.id)).size} cancelled orders released`,
    );
    add(
      'paid orders committed their stock exactly once; open orders hold exactly their units',
      perOrder
        .filter((r) =>
          PAID.includes(r.status)
            ? n(r.reserved) !== 0 || n(r.on_hand) !== -n(r.quantity) || n(r.commits) !== 1
            : OPEN.includes(r.status)
              ? n(r.reserved) !== n(r.quantity) || n(r.on_hand) !== 0
              : false,
        )
        .map(
          (r) =>
            `order ${r.id} (${r.status}) product ${r.product_id} q=${r.quantity}: reserved Δ ${r.reserved}, on_hand Δ ${r.on_hand}, commits ${r.commits}`,
        ),
      `${new Set(perOrder.filter((r) => PAID.includes(r.status)).map((r) => r.id)).size} paid orders`,
    );

    // ---- payments and refunds
    const payments = await this.q1(
      `SELECT p.id, p.order_id, p.intent_id, p.amount, p.status, p.refund_reserved, o.status AS order_status,
              o.total_amount, o.refunded_amount,
              coalesce((SELECT sum(amount) FROM refunds r WHERE r.payment_id = p.id AND r.status = 'succeeded'), 0) AS refunded,
              coalesce((SELECT sum(amount) FROM refunds r WHERE r.payment_id = p.id AND r.status IN ('pending', 'succeeded')), 0) AS reserved,
              coalesce((SELECT sum(amount) FROM refunds r WHERE r.payment_id = p.id AND r.status = 'succeeded' AND r.reason = 'paid_after_cancel'), 0) AS auto_refunded
         FROM payments p JOIN orders o ON o.id = p.order_id`,
    );
    const byIntent = new Map(payments.map((p) => [p.intent_id as string, p]));
    const paymentProblems: string[] = [];
    for (const p of payments.filter((x) => x.status === 'succeeded')) {
      const autoRefunded = p.order_status === 'CANCELLED' && n(p.auto_refunded) === n(p.amount);
      if (!PAID.includes(p.order_status) && !autoRefunded)
        paymentProblems.push(
          `payment ${p.intent_id}: order ${p.order_id} is ${p.order_status}, auto-refunded ${p.auto_refunded}/${p.amount}`,
        );
    }
    for (const [intentId, info] of w.intents) {
      const atProvider = fake.intent(intentId)?.status;
      if (atProvider !== 'succeeded') continue;
      const p = byIntent.get(intentId);
      if (!p)
        paymentProblems.push(
          `intent ${intentId} succeeded at the provider but is not recorded (order ${info.orderId})`,
        );
      else if (p.status !== 'succeeded')
        paymentProblems.push(
          `intent ${intentId} succeeded at the provider, recorded as ${p.status}`,
        );
    }
    add(
      'every succeeded payment belongs to a paid order or was refunded automatically (none lost)',
      paymentProblems,
      `${payments.filter((p) => p.status === 'succeeded').length} succeeded payments, ${payments.filter((p) => p.order_status === 'CANCELLED' && n(p.auto_refunded) > 0).length} refunded automatically`,
    );

    const intentsPerOrder = new Map<string, Set<string>>();
    for (const [intentId, info] of w.intents) {
      intentsPerOrder.set(
        info.orderId,
        (intentsPerOrder.get(info.orderId) ?? new Set()).add(intentId),
      );
    }
    for (const p of payments)
      intentsPerOrder.set(
        p.order_id,
        (intentsPerOrder.get(p.order_id) ?? new Set()).add(p.intent_id),
      );
    const captured = [...intentsPerOrder].filter(
      ([, ids]) =>
        [...ids].filter((id) => fake.intent(id)?.status === 'succeeded').length > 1 || ids.size > 1,
    );
    add(
      'no order captured twice (one intent per order, at most one succeeded at the provider)',
      captured.map(([order, ids]) => `order ${order}: intents ${[...ids].join(', ')}`),
      `${intentsPerOrder.size} orders with an intent`,
    );

    const stripe = fake.client();
    const refundProblems: string[] = [];
    for (const p of payments) {
      if (n(p.refunded) > n(p.amount))
        refundProblems.push(
          `payment ${p.intent_id}: refunded ${p.refunded} > captured ${p.amount}`,
        );
      if (n(p.refund_reserved) !== n(p.reserved))
        refundProblems.push(
          `payment ${p.intent_id}: refund_reserved ${p.refund_reserved} ≠ pending+succeeded ${p.reserved}`,
        );
      if (n(p.refunded_amount) > n(p.total_amount))
        refundProblems.push(`order ${p.order_id}: refunded_amount > total`);
      if (p.status !== 'succeeded' && n(p.refunded) === 0) continue;
      const list = await stripe.refunds.list({ payment_intent: p.intent_id, limit: 100 });
      const atProvider = list.data
        .filter((r) => r.status === 'succeeded')
        .reduce((t, r) => t + r.amount, 0);
      if (atProvider !== n(p.refunded))
        refundProblems.push(
          `payment ${p.intent_id}: provider refunded ${atProvider}, recorded ${p.refunded}`,
        );
    }
    add(
      'refunds ≤ captured, and the refunded amounts agree with the provider',
      refundProblems,
      `${payments.filter((p) => n(p.refunded) > 0).length} payments refunded`,
    );
    const pendingRefunds = await this.q1(
      `SELECT id, order_id, created_at, updated_at FROM refunds WHERE status = 'pending'`,
    );
    add(
      'no refund left pending after recovery',
      pendingRefunds.map(
        (r) =>
          `refund ${r.id} (order ${r.order_id}) asked ${w.when(r.created_at)}, last touched ${w.when(r.updated_at)}`,
      ),
      `${n((await this.q1(`SELECT count(*) FROM refunds`))[0].count)} refunds settled`,
    );

    // ---- emails, at the mail server. What a message is about (order, kind) is read from its
    // content; its identity is its Message-ID (deterministic, `<order.kind[.ref]@…>`). The same
    // Message-ID received twice is one message delivered twice (RFC 5322; clients fold it): the
    // unavoidable redelivery when a worker dies after the server accepted, before it recorded
    // it. Two Message-IDs for one email are two emails: that is the failure.
    const perMessage = new Map<string, number>();
    for (const m of smtp.messages)
      perMessage.set(m.messageId, (perMessage.get(m.messageId) ?? 0) + 1);
    const refundsOf = new Map<string, number>();
    for (const r of await this.q1(
      `SELECT order_id, count(*) AS n FROM refunds WHERE status = 'succeeded' GROUP BY order_id`,
    )) {
      refundsOf.set(r.order_id, n(r.n));
    }
    const idsPerEmail = new Map<string, Set<string>>();
    const duplicates: string[] = [];
    for (const m of smtp.messages) {
      if (!m.orderId || !m.kind) {
        duplicates.push(
          `${m.messageId || '(no Message-ID)'} "${m.subject}": names no order or no known kind`,
        );
        continue;
      }
      if (!m.messageId.startsWith(`<${m.orderId}.${m.kind}`)) {
        duplicates.push(
          `${m.messageId || '(no Message-ID)'} is about ${m.orderId}.${m.kind}: the Message-ID does not name it`,
        );
      }
      const k = `${m.orderId}.${m.kind}`;
      idsPerEmail.set(k, (idsPerEmail.get(k) ?? new Set()).add(m.messageId));
    }
    for (const [k, ids] of idsPerEmail) {
      const [orderId, kind] = k.split('.');
      // (one per refund for the refund kinds: told of it, and of its reversal)
      const allowed = kind.startsWith('refund') ? (refundsOf.get(orderId) ?? 0) : 1;
      if (ids.size > allowed)
        duplicates.push(
          `${k}: ${ids.size} distinct Message-IDs (at most ${allowed}): ${[...ids].join(', ')}`,
        );
    }
    add(
      'at most one email per (order, kind[, refund]) at the mail server (distinct Message-IDs)',
      duplicates,
      `${smtp.messages.length} messages, ${perMessage.size} distinct Message-IDs, ${idsPerEmail.size} (order, kind)`,
    );
    const redelivered = [...perMessage].filter(([, c]) => c > 1);
    checks.push({
      name: 'same-Message-ID redeliveries (a sender killed after the server accepted; one message)',
      ok: true,
      info: true,
      detail: redelivered.length
        ? `${redelivered.length}: ${sample(redelivered.map(([id, c]) => `${id} ${c}×`))}`
        : '0',
    });
    const deliveries = await this.q1(
      `SELECT order_id, kind, ref, status, message_id, attempts, last_error, claimed_at FROM email_deliveries`,
    );
    const delivered = new Set(perMessage.keys());
    const emailProblems: string[] = [];
    for (const d of deliveries) {
      // refused for good by the mail server, or over an address's daily allowance: never sent, by design
      if (d.status === 'rejected' || d.status === 'suppressed') continue;
      if (d.status === 'sending')
        emailProblems.push(
          `${d.order_id}.${d.kind}${d.ref ? `.${d.ref}` : ''} still 'sending' (attempts ${d.attempts}, claimed ${w.when(d.claimed_at)}${delivered.has(d.message_id) ? '; the mail server HAS it' : ''})`,
        );
      else if (!delivered.has(d.message_id))
        emailProblems.push(`${d.message_id} recorded sent, never reached the mail server`);
    }
    add(
      "email deliveries final: none stuck 'sending', every 'sent' one received",
      emailProblems,
      `${deliveries.length} deliveries`,
    );
    const due = await this.q1(
      `
      SELECT o.id AS order_id, 'cancellation' AS kind, '' AS ref FROM orders o WHERE o.status = 'CANCELLED'
      UNION ALL SELECT o.id, k.kind, '' FROM orders o CROSS JOIN (VALUES ('payment_receipt'), ('order_confirmation')) k(kind)
        WHERE o.status = ANY($1)
      UNION ALL SELECT r.order_id, 'refund', r.id::text FROM refunds r WHERE r.status = 'succeeded'`,
      [PAID],
    );
    // the mail server is the truth here (Message-ID `<order.kind[.ref]@…>`); the records are checked above
    // (a delivery recorded rejected or suppressed is not owed)
    const final = new Set(
      deliveries
        .filter((d) => d.status === 'rejected' || d.status === 'suppressed')
        .map((d) => `${d.order_id}.${d.kind}${d.ref ? `.${d.ref}` : ''}`),
    );
    const received = new Set(
      [...perMessage.keys()].map((id) => id.replace(/^</, '').replace(/@.*$/, '')),
    );
    const key = (d: { order_id: string; kind: string; ref: string }) =>
      `${d.order_id}.${d.kind}${d.ref ? `.${d.ref}` : ''}`;
    add(
      'every email due reached the mail server (cancellation, receipt + confirmation, refund)',
      due
        .filter((d) => !received.has(key(d)) && !final.has(key(d)))
        .map((d) => `${key(d)} never received`),
      `${due.length} emails due`,
    );

    // ---- idempotency, from the client's side
    const idProblems: string[] = [];
    const idOf: Record<string, (e: Exchange) => string | undefined> = {
      'order.create': (e) => e.body?.id,
      'order.payment': (e) => e.body?.paymentIntentId,
      'admin.refund': (e) => e.body?.id,
      'order.cancel': (e) => e.body?.id,
    };
    let replays = 0;
    const byKey = new Map<string, Exchange[]>();
    for (const e of ex)
      if (e.key && idOf[e.label])
        byKey.set(`${e.label} ${e.key}`, [...(byKey.get(`${e.label} ${e.key}`) ?? []), e]);
    for (const [k, list] of byKey) {
      const label = list[0].label;
      const ids = new Set(list.filter((e) => e.status >= 200 && e.status < 300).map(idOf[label]));
      replays += list.filter((e) => e.replayed).length;
      if (ids.size > 1) idProblems.push(`${k}: ${[...ids].join(' vs ')}`);
    }
    add(
      'every replayed key returned the same order / intent / refund',
      idProblems,
      `${byKey.size} keys, ${replays} replayed answers`,
    );

    const windows = w.faults.filter((f) => f.affectsApi);
    const excused = (e: Exchange) =>
      windows.some(
        (f) =>
          (e.start >= f.start - GRACE_MS && e.start <= f.end + GRACE_MS) ||
          (e.end >= f.start - GRACE_MS && e.end <= f.end + GRACE_MS) ||
          (e.start <= f.start && e.end >= f.end),
      );
    const errors = ex.filter((e) => e.status === 0 || e.status >= 500);
    const outside = errors.filter((e) => !excused(e));
    add(
      `no 5xx / no-answer outside fault windows (API-affecting windows ± ${GRACE_MS / 1000} s)`,
      outside.map(show),
      `${errors.length} errors, all inside fault windows`,
    );

    // every answer must be one the contract allows for that call (the drill never sends bad input)
    const allowed: Record<string, string[]> = {
      'order.create': ['201', '409 INSUFFICIENT_STOCK', '409 IDEMPOTENCY_KEY_IN_USE'],
      'order.payment': ['201', '409 ORDER_NOT_PAYABLE', '409 IDEMPOTENCY_KEY_IN_USE'],
      'order.cancel': ['200', '409 ORDER_NOT_CANCELLABLE', '409 IDEMPOTENCY_KEY_IN_USE'],
      'order.get': ['200'],
      'admin.refund': [
        '201',
        '409 REFUND_EXCEEDS_CAPTURED',
        '409 ORDER_NOT_REFUNDABLE',
        '409 IDEMPOTENCY_KEY_IN_USE',
      ],
      'admin.adjust': ['200', '409 STOCK_BELOW_RESERVED', '409 IDEMPOTENCY_KEY_IN_USE'],
      webhook: ['200'],
      'catalog.read': ['200'],
    };
    const unexpected = ex.filter(
      (e) =>
        e.status > 0 &&
        e.status < 500 &&
        allowed[e.label] &&
        !allowed[e.label].includes(String(e.status)) &&
        !allowed[e.label].includes(`${e.status} ${e.code}`),
    );
    add(
      'every 2xx/4xx answer is one the contract allows for that call',
      unexpected.map(show),
      `${ex.filter((e) => e.status > 0 && e.status < 500).length} answers`,
    );

    const inUse: string[] = [];
    for (const [, list] of byKey) {
      for (const e of list.filter((x) => x.code === 'IDEMPOTENCY_KEY_IN_USE')) {
        const holder = list.some(
          (o) =>
            o !== e &&
            o.start < e.end &&
            (o.end > e.start - 250 || (o.error === 'timeout' && o.end > e.start - 30_000)),
        );
        if (!holder) {
          const last = list.filter((o) => o.end <= e.start).at(-1);
          inUse.push(
            `${show(e)}; the key's last request ended ${last ? `${((e.start - last.end) / 1000).toFixed(1)} s earlier with ${last.status || last.error}` : '—'}`,
          );
        }
      }
    }
    add('no key refused IN_USE when none of its requests was running', inUse, 'none');

    const stuck = await this.q1(
      `SELECT principal, key, route, created_at, expires_at FROM idempotency_keys WHERE state = 'in_progress'`,
    );
    add(
      'no idempotency key stuck in progress',
      stuck.map(
        (s) =>
          `${s.route} key ${s.key} (claimed ${w.when(s.created_at)}, lease to ${w.when(s.expires_at)})`,
      ),
      'none',
    );

    // ---- queues, outbox, webhook inbox, orders
    const qs = await this.queueState();
    add(
      'queues drained (nothing waiting, active, overdue) and no job failed for good',
      [...qs.busy, ...qs.failed],
      `${this.queues.length} queues`,
    );
    const [ob] = await this.q1(
      `SELECT count(*) FILTER (WHERE status = 'pending') AS pending, count(*) FILTER (WHERE status = 'dead') AS dead, count(*) AS total FROM outbox`,
    );
    add(
      'outbox drained (no pending, no dead rows)',
      [
        ...(n(ob.pending) ? [`${ob.pending} pending`] : []),
        ...(n(ob.dead) ? [`${ob.dead} dead`] : []),
      ],
      `${ob.total} events relayed`,
    );
    const [wh] = await this.q1(
      `SELECT count(*) FILTER (WHERE processed_at IS NULL) AS open, count(*) AS total FROM webhook_events`,
    );
    add(
      'every recorded webhook event processed',
      n(wh.open) ? [`${wh.open} of ${wh.total} unprocessed`] : [],
      `${wh.total} events`,
    );
    const transient = await this.q1(
      `SELECT id, status, reservation_expires_at FROM orders
        WHERE (status = ANY($1) AND (reservation_expires_at IS NULL OR reservation_expires_at < now() - interval '3 seconds'))
           OR (status = 'PAID' AND updated_at < now() - interval '5 seconds')`,
      [OPEN],
    );
    add(
      'no order in a transient state past its deadline',
      transient.map((o) => `${o.id} ${o.status}`),
      'none',
    );

    const answered = new Set(
      ex
        .filter((e) => e.label === 'order.create' && e.status === 201)
        .map((e) => e.body?.id as string),
    );
    const orders = await this.q1(`SELECT id, status, created_at FROM orders`);
    add(
      'every order in the database was answered to its client (after retries)',
      orders.filter((o) => !answered.has(o.id)).map((o) => `${o.id} (${o.status})`),
      `${orders.length} orders`,
    );
    add(
      'the drill itself ran without internal errors',
      w.flowErrors,
      `${w.plan.flows.length} flows`,
    );
    return checks;
  }
}
