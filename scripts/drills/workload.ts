import { Client } from 'pg';
import type Stripe from 'stripe';
import type { FakeStripe } from '../../test/support/fake-stripe';
import { Cluster } from './cluster';
import { Exchange, Recorder, Send, definite } from './http';
import { Delivery, FaultPlan, FlowPlan, Plan, Replay } from './plan';
import { Rng } from './rng';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface FaultWindow {
  name: string;
  kind: FaultPlan['kind'];
  start: number;
  end: number;
  /** Worker kills must never show up in HTTP answers; only these windows excuse API errors. */
  affectsApi: boolean;
  note: string;
}

export interface IntentInfo {
  flow: number;
  orderId: string;
  /** The drill (as the customer's bank) made this intent succeed at the fake Stripe. */
  succeeded: boolean;
}

export interface Product {
  id: string;
  sku: string;
  price: number;
  initialStock: number;
}

/** Runs the plan against the cluster over HTTP, recording every exchange and fault window. */
export class Workload {
  readonly faults: FaultWindow[] = [];
  readonly intents = new Map<string, IntentInfo>();
  readonly flowErrors: string[] = [];
  readonly notes: string[] = [];
  /** Stock adjustments as the admin saw them: 200, 409 (refused), or no definite answer. */
  readonly adjustmentsSent: { productId: string; delta: number; answered: number | 'unknown' }[] =
    [];
  products: Product[] = [];
  customers: { email: string; token: string }[] = [];
  adminToken = '';
  private background = new Set<Promise<unknown>>();
  private reorderBuffer: Stripe.Event[] = [];
  private stopping = false;
  private readonly deliveryRng: Rng;
  private readonly emulatorRng: Rng;
  private readonly browseRng: Rng;

  constructor(
    readonly plan: Plan,
    private readonly cluster: Cluster,
    readonly rec: Recorder,
    private readonly fake: FakeStripe,
  ) {
    const root = new Rng(plan.seed);
    this.deliveryRng = root.fork('delivery');
    this.emulatorRng = root.fork('emulator');
    this.browseRng = root.fork('browse');
  }

  /** A database timestamp as drill time, naming the fault window it fell in (evidence). */
  when(at: Date | string | null): string {
    if (!at) return '—';
    const t = new Date(at).getTime() - this.rec.t0;
    const inside = this.faults
      .filter((f) => t >= f.start && t <= f.end)
      .map((f) => `during ${f.name}`);
    const near = this.faults
      .filter((f) => !(t >= f.start && t <= f.end) && t >= f.start - 2000 && t <= f.end + 2000)
      .map((f) => `${t < f.start ? 'just before' : 'just after'} ${f.name}`);
    const where = [...inside, ...near];
    return `t=${(t / 1000).toFixed(1)}s${where.length ? ` (${where.join(', ')})` : ''}`;
  }

  private runId(): string {
    return `s${this.plan.seed}`;
  }

  private bg(p: Promise<unknown>): void {
    const tracked = p.catch((e: unknown) => this.flowErrors.push(`background: ${String(e)}`));
    this.background.add(tracked);
    void tracked.finally(() => this.background.delete(tracked));
  }

  /** A client that retries like a real one: 5xx / no answer → back off, try the other API; IN_USE → wait. */
  async keyed(api: number, s: Send, budgetMs = 45_000): Promise<Exchange> {
    const deadline = Date.now() + budgetMs;
    let attempt = 0;
    let target = api;
    for (;;) {
      const ex = await this.rec.send(target, s);
      if (definite(ex) || Date.now() > deadline) return ex;
      if (ex.code === 'IDEMPOTENCY_KEY_IN_USE') {
        await sleep(Math.min(1000, ex.retryAfter ? ex.retryAfter * 1000 : 500));
      } else {
        await sleep(Math.min(4000, 250 * 2 ** attempt));
        target = 1 - target;
      }
      attempt += 1;
    }
  }

  // ---------------------------------------------------------------- setup

  async setup(): Promise<void> {
    const register = async (email: string) => {
      const ex = await this.keyed(0, {
        label: 'setup.register',
        method: 'POST',
        path: '/v1/auth/register',
        json: { email, password: 'drill-password-1', name: 'Drill customer' },
      });
      if (ex.status !== 201)
        throw new Error(`register ${email}: ${ex.status} ${JSON.stringify(ex.body)}`);
      return ex.body.accessToken as string;
    };
    const emails = Array.from(
      { length: this.plan.customers },
      (_, i) => `c${i}.${this.runId()}@drill.test`,
    );
    for (let i = 0; i < emails.length; i += 6) {
      const batch = emails.slice(i, i + 6);
      const tokens = await Promise.all(batch.map(register));
      batch.forEach((email, k) => this.customers.push({ email, token: tokens[k] }));
    }
    // The first admin: a registered account promoted in SQL (what admin:create does), then a fresh sign-in.
    const adminEmail = `admin.${this.runId()}@drill.test`;
    await register(adminEmail);
    const db = new Client({ connectionString: this.cluster.databaseUrl });
    await db.connect();
    await db.query(`UPDATE users SET role = 'admin' WHERE email = $1`, [adminEmail]);
    await db.end();
    const login = await this.rec.send(0, {
      label: 'setup.login',
      method: 'POST',
      path: '/v1/auth/login',
      json: { email: adminEmail, password: 'drill-password-1' },
    });
    if (login.status !== 200) throw new Error(`admin login: ${login.status}`);
    this.adminToken = login.body.accessToken;
    for (const p of this.plan.products) {
      const ex = await this.rec.send(0, {
        label: 'setup.product',
        method: 'POST',
        path: '/v1/admin/products',
        token: this.adminToken,
        key: `product-${p.sku}-${this.runId()}`,
        json: {
          sku: `${p.sku}-${this.runId()}`,
          name: `Drill ${p.sku}`,
          description: 'drill product',
          price: { amount: p.price, currency: 'INR' },
          initialStock: p.initialStock,
        },
      });
      if (ex.status !== 201)
        throw new Error(`product ${p.sku}: ${ex.status} ${JSON.stringify(ex.body)}`);
      this.products.push({
        id: ex.body.id,
        sku: p.sku,
        price: p.price,
        initialStock: p.initialStock,
      });
    }
  }

  // ---------------------------------------------------------------- webhooks

  /** Delivers one event like Stripe does: signed at send time, retried until 2xx (or a 4xx). */
  private async deliverOnce(ev: Stripe.Event, api: number, flow: number | null): Promise<void> {
    const deadline = Date.now() + 60_000;
    let target = api;
    let attempt = 0;
    for (;;) {
      const { body, signature } = this.fake.signed(ev);
      const ex = await this.rec.send(target, {
        label: 'webhook',
        flow,
        method: 'POST',
        path: '/v1/webhooks/stripe',
        raw: body,
        headers: { 'stripe-signature': signature },
      });
      if ((ex.status >= 200 && ex.status < 500) || Date.now() > deadline) return;
      await sleep(Math.min(4000, 300 * 2 ** attempt));
      attempt += 1;
      target = 1 - target;
    }
  }

  private async deliver(
    ev: Stripe.Event,
    mode: Delivery,
    api: number,
    flow: number | null,
  ): Promise<void> {
    switch (mode) {
      case 'once':
        return this.deliverOnce(ev, api, flow);
      case 'twice':
        await this.deliverOnce(ev, api, flow);
        return this.deliverOnce(ev, 1 - api, flow);
      case 'concurrent':
        await Promise.all([
          this.deliverOnce(ev, 0, flow),
          this.deliverOnce(ev, 1, flow),
          this.deliverOnce(ev, api, flow),
        ]);
        return;
      case 'delayed': {
        const delay = 1500 + Math.floor(this.deliveryRng.next() * 6000);
        this.bg(sleep(delay).then(() => this.deliverOnce(ev, 1 - api, flow)));
        return;
      }
      case 'reordered':
        this.reorderBuffer.push(ev);
        return;
    }
  }

  /** Every 2.5 s: the buffered events go out shuffled (late, out of order, some twice). */
  private async reorderLoop(): Promise<void> {
    while (!this.stopping || this.reorderBuffer.length > 0) {
      await sleep(2500);
      const batch = this.deliveryRng.shuffle(this.reorderBuffer.splice(0));
      const dupes = batch.filter(() => this.deliveryRng.chance(0.3));
      await Promise.all(
        [...batch, ...dupes].map((ev) => this.deliverOnce(ev, this.deliveryRng.int(0, 1), null)),
      );
    }
  }

  /**
   * Stripe's own events for what the app asked of it: a refund → `charge.refunded`, a cancelled
   * intent → `payment_intent.canceled`, delivered like the others (duplicated, late, reordered).
   */
  private async emulatorLoop(): Promise<void> {
    let cursor = 0;
    const modes: Delivery[] = ['once', 'twice', 'concurrent', 'delayed', 'reordered'];
    while (!this.stopping) {
      await sleep(500);
      const reqs = this.fake.requests;
      for (; cursor < reqs.length; cursor++) {
        const r = reqs[cursor];
        if (r.method !== 'POST') continue;
        let ev: Stripe.Event | undefined;
        try {
          if (r.path === '/v1/refunds' && typeof r.body.payment_intent === 'string') {
            ev = this.fake.eventFor('charge.refunded', r.body.payment_intent);
          }
          const m = /^\/v1\/payment_intents\/([^/]+)\/cancel$/.exec(r.path);
          if (m && this.fake.intent(m[1])?.status === 'canceled') {
            ev = this.fake.eventFor('payment_intent.canceled', m[1]);
          }
        } catch {
          ev = undefined; // nothing to report (e.g. a refund Stripe refused)
        }
        if (ev)
          this.bg(this.deliver(ev, this.emulatorRng.pick(modes), this.emulatorRng.int(0, 1), null));
      }
    }
  }

  // ---------------------------------------------------------------- flows

  private async replayed(
    replay: Replay,
    api: number,
    delayMs: number,
    s: Send,
  ): Promise<Exchange[]> {
    switch (replay) {
      case 'none':
        return [await this.keyed(api, s)];
      case 'immediate': {
        const a = await this.keyed(api, s);
        return [a, await this.keyed(api, s)];
      }
      case 'concurrent':
        return Promise.all([this.keyed(api, s), this.keyed(1 - api, s), this.keyed(api, s)]);
      case 'other_api': {
        const a = await this.keyed(api, s);
        return [a, await this.keyed(1 - api, s)];
      }
      case 'delayed': {
        const a = await this.keyed(api, s);
        this.bg(sleep(delayMs).then(() => this.keyed(1 - api, s)));
        return [a];
      }
    }
  }

  private async cancel(f: FlowPlan, orderId: string, replay: Replay): Promise<void> {
    await this.replayed(replay, f.api, f.replayDelayMs, {
      label: 'order.cancel',
      flow: f.i,
      method: 'POST',
      path: `/v1/orders/${orderId}/cancel`,
      token: this.customers[f.customer].token,
      key: `f${f.i}-cancel-${this.runId()}`,
    });
  }

  private async waitStatus(
    f: FlowPlan,
    orderId: string,
    want: string[],
    ms: number,
  ): Promise<string | undefined> {
    const deadline = Date.now() + ms;
    let status: string | undefined;
    while (Date.now() < deadline) {
      const ex = await this.rec.send(f.api, {
        label: 'order.get',
        flow: f.i,
        method: 'GET',
        path: `/v1/orders/${orderId}`,
        token: this.customers[f.customer].token,
      });
      if (ex.status === 200) {
        status = ex.body.status;
        if (status && want.includes(status)) return status;
      }
      await sleep(500);
    }
    return status;
  }

  private async refund(f: FlowPlan, orderId: string, total: number): Promise<void> {
    const s = (key: string, amount?: number): Send => ({
      label: 'admin.refund',
      flow: f.i,
      method: 'POST',
      path: `/v1/admin/orders/${orderId}/refunds`,
      token: this.adminToken,
      key: `f${f.i}-${key}-${this.runId()}`,
      json: amount === undefined ? {} : { amount: { amount, currency: 'INR' } },
    });
    switch (f.refund) {
      case 'none':
        return;
      case 'full':
        await this.keyed(f.api, s('refund'));
        return;
      case 'partial':
        await this.keyed(f.api, s('refund', Math.max(1, Math.floor(total / 2))));
        return;
      case 'two_partials_concurrent': {
        const part = Math.max(1, Math.ceil(total * 0.6));
        await Promise.all([this.keyed(0, s('refund-a', part)), this.keyed(1, s('refund-b', part))]);
        return;
      }
      case 'full_replayed':
        await this.replayed('concurrent', f.api, 0, s('refund'));
        return;
    }
  }

  async flow(f: FlowPlan): Promise<void> {
    const token = this.customers[f.customer].token;
    const create: Send = {
      label: 'order.create',
      flow: f.i,
      method: 'POST',
      path: '/v1/orders',
      token,
      key: `f${f.i}-order-${this.runId()}`,
      json: {
        items: f.lines.map((l) => ({
          productId: this.products[l.product].id,
          quantity: l.quantity,
        })),
      },
    };
    const created = (await this.replayed(f.createReplay, f.api, f.replayDelayMs, create)).find(
      (e) => e.status === 201,
    );
    if (!created) return; // e.g. 409 INSUFFICIENT_STOCK: nothing more to do
    const orderId = created.body.id as string;
    const total = Number(created.body.total?.amount ?? 0);
    if (f.next === 'abandon') return;
    if (f.next === 'cancel') {
      await sleep(f.lateSuccessDelayMs);
      return this.cancel(f, orderId, f.cancelReplay);
    }
    const paid = (
      await this.replayed(f.payReplay, f.api, f.replayDelayMs, {
        label: 'order.payment',
        flow: f.i,
        method: 'POST',
        path: `/v1/orders/${orderId}/payment`,
        token,
        key: `f${f.i}-pay-${this.runId()}`,
      })
    ).find((e) => e.status === 201);
    if (!paid) return;
    const intentId = paid.body.paymentIntentId as string;
    const info: IntentInfo = this.intents.get(intentId) ?? { flow: f.i, orderId, succeeded: false };
    this.intents.set(intentId, info);
    const bank = (what: 'succeed' | 'decline'): Stripe.Event | undefined => {
      try {
        const ev = what === 'succeed' ? this.fake.succeed(intentId) : this.fake.decline(intentId);
        if (what === 'succeed') info.succeeded = true;
        return ev;
      } catch {
        return undefined; // the intent was cancelled first (order expired or cancelled): nothing to pay
      }
    };
    switch (f.next) {
      case 'pay_abandon':
        return;
      case 'pay_cancel':
        return this.cancel(f, orderId, f.cancelReplay);
      case 'pay_decline': {
        const ev = bank('decline');
        if (ev) await this.deliver(ev, f.delivery, f.api, f.i);
        return;
      }
      case 'pay_cancel_late_success': {
        await this.cancel(f, orderId, 'none');
        await sleep(f.lateSuccessDelayMs);
        const ev = bank('succeed');
        if (ev) await this.deliver(ev, f.delivery, f.api, f.i);
        return;
      }
      case 'pay_succeed': {
        const stale =
          f.staleEvent === 'none' ? undefined : this.fake.eventFor(f.staleEvent, intentId);
        const ev = bank('succeed');
        if (!ev) return;
        await this.deliver(ev, f.delivery, f.api, f.i);
        if (stale) await this.deliver(stale, 'once', 1 - f.api, f.i);
        if (f.refund === 'none') return;
        const status = await this.waitStatus(f, orderId, ['CONFIRMED'], 30_000);
        if (status === 'CONFIRMED') await this.refund(f, orderId, total);
        else
          this.notes.push(
            `flow ${f.i}: order ${orderId} not CONFIRMED within 30 s (was ${status}); refund skipped`,
          );
        return;
      }
    }
  }

  // ---------------------------------------------------------------- faults, admin, browsing

  private async allApisReady(): Promise<void> {
    await Promise.all(this.cluster.apis.map((a) => a.ready(120_000)));
  }

  private async fault(p: FaultPlan): Promise<void> {
    const start = this.rec.now();
    let name = '';
    let affectsApi = true;
    switch (p.kind) {
      case 'kill-worker': {
        const w = this.cluster.workers[p.target];
        name = `kill -9 ${w.name}`;
        affectsApi = false;
        await w.kill9();
        await sleep(500);
        w.start();
        await w.ready(120_000);
        break;
      }
      case 'kill-api': {
        const a = this.cluster.apis[p.target];
        name = `kill -9 ${a.name}`;
        await a.kill9();
        await sleep(500);
        a.start();
        await a.ready(120_000);
        break;
      }
      case 'restart-redis':
        name = 'redis kill -9 + restart';
        await this.cluster.killRedis();
        await sleep(1000);
        await this.cluster.startRedis();
        await this.allApisReady();
        break;
      case 'restart-postgres':
        name = 'pg_ctl restart -m immediate';
        await this.cluster.restartPostgresImmediate();
        await this.allApisReady();
        break;
    }
    this.faults.push({ name, kind: p.kind, start, end: this.rec.now(), affectsApi, note: '' });
  }

  private async adjust(i: number, a: Plan['adjustments'][number]): Promise<void> {
    const ex = await this.keyed(a.api, {
      label: 'admin.adjust',
      method: 'POST',
      path: `/v1/admin/products/${this.products[a.product].id}/stock-adjustments`,
      token: this.adminToken,
      key: `adj${i}-${this.runId()}`,
      json: { delta: a.delta, reason: `drill adjustment ${i}` },
    });
    this.adjustmentsSent.push({
      productId: this.products[a.product].id,
      delta: a.delta,
      answered: definite(ex) ? ex.status : 'unknown',
    });
  }

  private async browseLoop(): Promise<void> {
    while (!this.stopping) {
      await sleep(400 + this.browseRng.int(0, 600));
      const api = this.browseRng.int(0, 1);
      const path = this.browseRng.chance(0.5)
        ? `/v1/products?limit=20&sort=${this.browseRng.pick(['newest', 'price_asc', 'popular'])}`
        : `/v1/products/${this.browseRng.pick(this.products).id}`;
      await this.rec.send(api, { label: 'catalog.read', method: 'GET', path });
    }
  }

  /** Runs flows, admin adjustments and faults on their schedule; resolves when everything settled. */
  async run(): Promise<void> {
    const t0 = Date.now();
    const at = (ms: number) => sleep(Math.max(0, ms - (Date.now() - t0)));
    const loops = [this.reorderLoop(), this.emulatorLoop(), this.browseLoop()];
    const tasks: Promise<unknown>[] = [];
    tasks.push(
      (async () => {
        for (const p of this.plan.faults) {
          await at(p.at);
          await this.fault(p);
        }
      })(),
    );
    this.plan.adjustments.forEach((a, i) => tasks.push(at(a.at).then(() => this.adjust(i, a))));
    for (const f of this.plan.flows) {
      tasks.push(
        at(f.startAt).then(() =>
          this.flow(f).catch((e: unknown) =>
            this.flowErrors.push(`flow ${f.i}: ${e instanceof Error ? e.stack : String(e)}`),
          ),
        ),
      );
    }
    await Promise.all(tasks);
    while (this.background.size > 0) await Promise.all([...this.background]);
    this.stopping = true;
    await Promise.all(loops);
    while (this.background.size > 0) await Promise.all([...this.background]);
  }

  /**
   * What a client does with a request that never got a definite answer: it retries with the same
   * key. One attempt per unresolved order key, so every committed order reaches its client.
   */
  async retryUnresolvedOrders(): Promise<number> {
    const byKey = new Map<string, Exchange[]>();
    for (const ex of this.rec.exchanges) {
      if (ex.label !== 'order.create' || !ex.key) continue;
      byKey.set(ex.key, [...(byKey.get(ex.key) ?? []), ex]);
    }
    let n = 0;
    for (const [key, list] of byKey) {
      if (list.some(definite)) continue;
      const first = list[0];
      const f = this.plan.flows.find((x) => x.i === first.flow);
      if (!f) continue;
      n += 1;
      await this.keyed(
        0,
        {
          label: 'order.create',
          flow: f.i,
          method: 'POST',
          path: '/v1/orders',
          token: this.customers[f.customer].token,
          key,
          json: {
            items: f.lines.map((l) => ({
              productId: this.products[l.product].id,
              quantity: l.quantity,
            })),
          },
        },
        10_000,
      );
    }
    return n;
  }
}
