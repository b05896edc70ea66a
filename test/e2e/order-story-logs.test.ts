import { randomUUID } from 'node:crypto';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Stripe from 'stripe';
import { JobName } from '../../src/queue/queues';
import { registerCustomer, TEST_PASSWORD } from '../support/auth';
import { insertProduct, newKey } from '../support/fixtures';
import { HttpClient } from '../support/http';
import { runScript } from '../support/processes';
import { freePort } from '../support/ports';
import { createTestDatabase, TestDatabase } from '../support/test-database';
import { waitFor } from '../support/wait-for';

type Line = Record<string, unknown>;

/** The JSON log lines of a process output that mention `needle` (what `grep` would find). */
const grep = (output: string, needle: string): Line[] =>
  output
    .split('\n')
    .filter((l) => l.includes(needle))
    .map((l) => JSON.parse(l) as Line);

const WEBHOOK_SECRET = 'whsec_story_logs_webhook_secret_0123';

describe('an order’s story in the logs of the API and the worker (real processes)', () => {
  let db: TestDatabase;
  let api: ReturnType<typeof runScript>;
  let worker: ReturnType<typeof runScript>;
  let http: HttpClient;
  let env: Record<string, string>;

  beforeAll(async () => {
    db = await createTestDatabase();
    const port = await freePort();
    env = {
      DATABASE_URL: db.url,
      REDIS_KEY_PREFIX: `story${randomUUID().slice(0, 6)}`,
      MAIL_OUTBOX_DIR: join(tmpdir(), `shop-test-mail-${process.pid}`),
      RATE_LIMIT_ENABLED: 'false',
      STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET,
    };
    api = runScript('src/main.ts', { ...env, PORT: String(port), HOST: '127.0.0.1' }, 'info');
    worker = runScript('src/worker.ts', env, 'info');
    http = new HttpClient(`http://127.0.0.1:${port}`);
    const output = () =>
      `API:\n${api.output().slice(-3000)}\nworker:\n${worker.output().slice(-3000)}`;
    await waitFor(
      'the API to be ready',
      () =>
        fetch(`${http.baseUrl}/health/ready`).then(
          (r) => r.status,
          () => 0,
        ),
      {
        until: (s) => s === 200,
        timeoutMs: 30_000,
        context: output,
      },
    );
    await waitFor('the worker to start', worker.output, {
      until: (o) => o.includes('worker started'),
      timeoutMs: 30_000,
      context: output,
    });
  }, 60_000);

  afterAll(async () => {
    for (const p of [api, worker]) {
      if (p && p.proc.exitCode === null) {
        p.proc.kill('SIGTERM');
        await p.exited;
      }
    }
    await db?.drop();
  });

  it("load balancers' probes (/health) write no request line; other requests do", async () => {
    for (let i = 0; i < 5; i++) {
      expect((await fetch(`${http.baseUrl}/health/ready`)).status).toBe(200);
      expect((await fetch(`${http.baseUrl}/health/live`)).status).toBe(200);
    }
    // a request after them: once its line is out, theirs would be too
    const marker = `after-probes-${randomUUID()}`;
    await http.get('/v1/products', { headers: { 'x-request-id': marker } });
    await waitFor('the request line', () => grep(api.output(), marker).length > 0 || undefined);
    const lines = grep(api.output(), '"msg":"request completed"');
    expect(lines.length).toBeGreaterThan(0);
    expect(
      lines.filter((l) =>
        String((l.req as { url?: string } | undefined)?.url).startsWith('/health'),
      ),
    ).toEqual([]);
  });

  it('a request line keeps a bounded path and the query by its names (the values of paging and filters only), whatever the client sent', async () => {
    const marker = `long-url-${randomUUID()}`;
    const secret = `querysecret${randomUUID().slice(0, 8)}`;
    const target =
      `/${'%22'.repeat(4_000)}?token=${secret}&q=my+home+address&limit=5&` +
      Array.from({ length: 30 }, (_, i) => `p${i}=1`).join('&');
    expect(
      (await fetch(`${http.baseUrl}${target}`, { headers: { 'x-request-id': marker } })).status,
    ).toBe(404);
    const searched = `search-${randomUUID()}`;
    await fetch(`${http.baseUrl}/v1/products?q=${secret}&limit=5&sort=price`, {
      headers: { 'x-request-id': searched },
    });
    await waitFor(
      'the request lines',
      () =>
        (grep(api.output(), marker).length > 0 && grep(api.output(), searched).length > 0) ||
        undefined,
    );
    const raw = api
      .output()
      .split('\n')
      .filter((l) => l.includes(marker) || l.includes(searched));
    expect(raw.length).toBeGreaterThan(0);
    for (const line of raw) {
      expect(line.length).toBeLessThan(2_000);
      expect(line).not.toContain(secret);
      expect(line).not.toContain('address');
    }
    const url = (needle: string) =>
      grep(api.output(), needle)
        .map((l) => (l.req as { url?: string } | undefined)?.url)
        .find((u) => u !== undefined);
    expect(url(marker)).toMatch(/^\/%22/);
    expect(url(marker)).toContain(' more)?token=…&q=…&limit=5&p0=…');
    expect(url(marker)).toMatch(/…\(17 more\)$/);
    expect(url(searched)).toBe('/v1/products?q=…&limit=5&sort=price');
  });

  it("a signed Stripe webhook's lines carry its requestId (its body is read before the handler, on the connection's events)", async () => {
    const requestId = `webhook-${randomUUID()}`;
    const raw = JSON.stringify({
      id: `evt_story_${randomUUID().replace(/-/g, '')}`,
      object: 'event',
      type: 'payment_intent.succeeded',
      data: {
        object: { id: `pi_story_${randomUUID().replace(/-/g, '')}`, object: 'payment_intent' },
      },
    });
    const res = await fetch(`${http.baseUrl}/v1/webhooks/stripe`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-request-id': requestId,
        'stripe-signature': new Stripe('sk_test_unused').webhooks.generateTestHeaderString({
          payload: raw,
          secret: WEBHOOK_SECRET,
        }),
      },
      body: raw,
    });
    expect(res.status).toBe(200);
    const commands = () =>
      grep(api.output(), '"msg":"command completed"').filter(
        (l) => l.action === 'POST /v1/webhooks/stripe' && l.status === 200,
      );
    await waitFor('its command line', () => commands().length > 0 || undefined);
    expect(commands()).toEqual([expect.objectContaining({ requestId })]);

    // one refused (no signature, or one made with another secret: a prober, or a secret rotated
    // wrongly) is a security event, saying why and from where
    const forged = `forged-${randomUUID()}`;
    const unsigned = `unsigned-${randomUUID()}`;
    for (const [id, signature] of [
      [
        forged,
        new Stripe('sk_test_unused').webhooks.generateTestHeaderString({
          payload: raw,
          secret: 'whsec_not_the_shops_secret_at_all_0123',
        }),
      ],
      [unsigned, undefined],
    ] as const) {
      const refused = await fetch(`${http.baseUrl}/v1/webhooks/stripe`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'x-request-id': id,
          ...(signature ? { 'stripe-signature': signature } : {}),
        },
        body: raw,
      });
      expect(refused.status).toBe(400);
    }
    const refusals = (id: string) =>
      grep(api.output(), id).filter((l) => l.event === 'webhook_refused');
    await waitFor(
      'the refusals',
      () => refusals(forged).length > 0 && refusals(unsigned).length > 0,
    );
    for (const [id, reason] of [
      [forged, 'signature mismatch'],
      [unsigned, 'missing'],
    ])
      expect(refusals(id)).toEqual([
        expect.objectContaining({
          level: 40,
          requestId: id,
          route: '/v1/webhooks/stripe',
          reason,
          client: '127.0.0.1',
        }),
      ]);
  });

  it('a command refused before its handler (a guard: 401, 403, 429…) has its line too, with who sent it and why', async () => {
    const customer = await registerCustomer(http);
    const id = (what: string) => `refused-${what}-${randomUUID()}`;
    const anonymous = id('anonymous');
    const forbidden = id('forbidden');
    const handled = id('handled');
    expect(
      (await http.post('/v1/orders', { items: [] }, { headers: { 'x-request-id': anonymous } }))
        .status,
    ).toBe(401);
    const product = {
      sku: 'REFUSED-1',
      name: 'Refused',
      priceAmount: 100,
      currency: 'EUR',
      stock: 1,
    };
    expect(
      (
        await http.post('/v1/admin/products', product, {
          token: customer.accessToken,
          headers: { 'x-request-id': forbidden },
        })
      ).status,
    ).toBe(403);
    // a handler's own refusal: one line (the interceptor's), not two
    expect(
      (
        await http.post(
          '/v1/orders',
          { items: [] },
          { token: customer.accessToken, headers: { 'x-request-id': handled } },
        )
      ).status,
    ).toBe(400);
    const lines = (requestId: string) =>
      grep(api.output(), requestId).filter((l) => l.msg === 'command completed');
    // (the last request's lines are written once its answer has gone)
    await waitFor('the three lines', () =>
      [anonymous, forbidden, handled].every((r) => lines(r).length > 0),
    );
    const [anonymousLine] = lines(anonymous);
    expect(lines(anonymous)).toEqual([
      expect.objectContaining({
        level: 30,
        requestId: anonymous,
        action: 'POST /v1/orders',
        status: 401,
        principalId: null,
        error: 'UNAUTHENTICATED',
        refused: true,
      }),
    ]);
    expect(anonymousLine.durationMs).toEqual(expect.any(Number));
    expect(lines(forbidden)).toEqual([
      expect.objectContaining({
        requestId: forbidden,
        action: 'POST /v1/admin/products',
        status: 403,
        principalId: customer.user.id,
        error: 'FORBIDDEN',
        refused: true,
      }),
    ]);
    expect(lines(handled)).toEqual([
      expect.objectContaining({ requestId: handled, status: 400, principalId: customer.user.id }),
    ]);
    expect(lines(handled)[0]).not.toHaveProperty('refused');
    // a 403 FORBIDDEN is a security event too (warn): who, what, from where — a read's as well
    // (every customer's orders), which has no command line, and the queue board's (its own
    // sign-in, outside Nest's guards)
    const peeked = id('peeked');
    const board = id('board');
    for (const [path, requestId] of [
      ['/v1/admin/orders', peeked],
      ['/admin/queues', board],
    ]) {
      const res = await http.get(path, {
        token: customer.accessToken,
        headers: { 'x-request-id': requestId },
      });
      expect([path, res.status]).toEqual([path, 403]);
    }
    const denied = (requestId: string) =>
      grep(api.output(), requestId).filter((l) => l.event === 'access_denied');
    await waitFor('the denials', () =>
      [forbidden, peeked, board].every((r) => denied(r).length > 0),
    );
    for (const [requestId, action] of [
      [forbidden, 'POST /v1/admin/products'],
      [peeked, 'GET /v1/admin/orders'],
      [board, 'GET /admin/queues'],
    ])
      expect(denied(requestId)).toEqual([
        expect.objectContaining({
          level: 40,
          context: 'Security',
          requestId,
          action,
          principalId: customer.user.id,
          client: '127.0.0.1',
          error: 'FORBIDDEN',
        }),
      ]);

    // pipelined on one connection behind a slower command (a registration hashes a password):
    // the refusal's answer goes out when the first one's has, and its line keeps its own id
    const slow = id('slow');
    const pipelined = id('pipelined');
    const register = JSON.stringify({
      email: `${slow}@test.local`,
      password: TEST_PASSWORD,
      name: 'Slow',
    });
    const { host, hostname, port } = new URL(http.baseUrl);
    const socket = connect(Number(port), hostname);
    let answers = '';
    socket.on('data', (d: Buffer) => (answers += d.toString()));
    socket.write(
      `POST /v1/auth/register HTTP/1.1\r\nhost: ${host}\r\nx-request-id: ${slow}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(register)}\r\n\r\n${register}` +
        `POST /v1/orders HTTP/1.1\r\nhost: ${host}\r\nx-request-id: ${pipelined}\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}`,
    );
    try {
      await waitFor('both answers', () => (answers.match(/HTTP\/1\.1 /g) ?? []).length === 2);
      await waitFor('both lines', () => lines(slow).length > 0 && lines(pipelined).length > 0);
    } finally {
      socket.destroy();
    }
    expect(lines(slow)).toEqual([
      expect.objectContaining({ requestId: slow, action: 'POST /v1/auth/register', status: 201 }),
    ]);
    expect(lines(pipelined)).toEqual([
      expect.objectContaining({
        requestId: pipelined,
        action: 'POST /v1/orders',
        status: 401,
        refused: true,
      }),
    ]);
  });

  it("a client past its limit has the window's first refusal logged, not every one after it (a flood wrote a line per request)", async () => {
    const port = await freePort();
    const limited = runScript(
      'src/main.ts',
      { ...env, RATE_LIMIT_ENABLED: 'true', PORT: String(port), HOST: '127.0.0.1' },
      'info',
    );
    try {
      const base = `http://127.0.0.1:${port}`;
      await waitFor(
        'the rate-limited API to be ready',
        () =>
          fetch(`${base}/health/ready`).then(
            (r) => r.status,
            () => 0,
          ),
        {
          until: (s) => s === 200,
          timeoutMs: 30_000,
          context: () => limited.output().slice(-2000),
        },
      );
      const flood = `flood-${randomUUID()}`;
      const statuses: number[] = [];
      for (let round = 0; round < 16; round++) {
        const batch = await Promise.all(
          Array.from({ length: 20 }, (_, i) =>
            fetch(`${base}/v1/me`, {
              headers: { 'x-request-id': `${flood}-${round * 20 + i}` },
            }).then((r) => r.status),
          ),
        );
        statuses.push(...batch);
      }
      expect([
        statuses.filter((s) => s === 401).length,
        statuses.filter((s) => s === 429).length,
      ]).toEqual([300, 20]);
      const accessLines = (status: number) =>
        grep(limited.output(), flood).filter(
          (l) => (l.res as { statusCode?: number } | undefined)?.statusCode === status,
        );
      // a last request in a budget of its own (the webhooks'): once its line is out, every line of
      // the flood's answers, all sent before it, is out too (one process, one stream, in order)
      const marker = `${flood}-marker`;
      const refused = await fetch(`${base}/v1/webhooks/stripe`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-request-id': marker },
        body: '{}',
      });
      expect(refused.status).toBe(400);
      await waitFor('the last line', () =>
        grep(limited.output(), marker).some((l) => l.res !== undefined),
      );
      expect([accessLines(401).length, accessLines(429).length]).toEqual([300, 1]);
    } finally {
      limited.proc.kill('SIGTERM');
      await limited.exited;
    }
  }, 90_000);

  it('tells created (first), replayed, payment pending, paid and confirmed, with ids and nothing secret', async () => {
    const customer = await registerCustomer(http);
    const productId = await insertProduct(db.pool, { stock: 5, priceAmount: 1500 });
    const key = newKey();
    const items = { items: [{ productId, quantity: 1 }] };
    const created = await http.post('/v1/orders', items, {
      token: customer.accessToken,
      idempotencyKey: key,
    });
    expect(created.status).toBe(201);
    const orderId = created.body.id as string;
    const replayed = await http.post('/v1/orders', items, {
      token: customer.accessToken,
      idempotencyKey: key,
    });
    expect(replayed.status).toBe(201);
    expect(replayed.headers.get('idempotent-replayed')).toBe('true');

    const payKey = newKey();
    const pay = await http.post(
      `/v1/orders/${orderId}/payment`,
      {},
      { token: customer.accessToken, idempotencyKey: payKey },
    );
    expect(pay.status).toBe(201);
    const confirm = await http.post(
      `/v1/dev/payment-intents/${pay.body.paymentIntentId}/confirm`,
      { outcome: 'succeeded' },
      { token: customer.accessToken },
    );
    expect(confirm.status).toBe(200);
    // the worker finalizes: wait for its last line of the story, not for a time
    const workerStory = await waitFor(
      'the worker to log the move to CONFIRMED',
      () => grep(worker.output(), orderId),
      {
        until: (lines) => lines.some((l) => l.action === 'transition' && l.to === 'CONFIRMED'),
        timeoutMs: 30_000,
      },
    );
    const apiStory = grep(api.output(), orderId);

    // API: the command lines (created first, then replayed) and the move to PAYMENT_PENDING
    const commands = apiStory.filter(
      (l) => l.msg === 'command completed' && l.action === 'POST /v1/orders',
    );
    expect(commands).toEqual([
      expect.objectContaining({
        status: 201,
        orderId,
        to: 'INVENTORY_RESERVED',
        idempotency: 'first',
      }),
      expect.objectContaining({
        status: 201,
        orderId,
        to: 'INVENTORY_RESERVED',
        idempotency: 'replayed',
      }),
    ]);
    expect(commands[0].requestId).not.toBe(commands[1].requestId);
    for (const c of commands) {
      expect(c).toMatchObject({ level: 30, principalId: customer.user.id });
      expect(typeof c.requestId).toBe('string');
      expect(typeof c.durationMs).toBe('number');
    }
    const pending = apiStory.find((l) => l.action === 'transition' && l.to === 'PAYMENT_PENDING');
    expect(pending).toMatchObject({
      level: 30,
      orderId,
      from: 'INVENTORY_RESERVED',
      to: 'PAYMENT_PENDING',
      idempotency: 'first',
    });
    expect(typeof pending!.requestId).toBe('string');
    expect(apiStory).toContainEqual(
      expect.objectContaining({
        action: `POST /v1/orders/:id/payment`,
        orderId,
        status: 201,
        idempotency: 'first',
      }),
    );

    // worker: the payment event converged, PAID, CONFIRMED — each with the job that did it
    const transitions = workerStory.filter((l) => l.action === 'transition');
    expect(transitions.map((l) => [l.from, l.to])).toEqual([
      ['PAYMENT_PENDING', 'PAID'],
      ['PAID', 'CONFIRMED'],
    ]);
    const converged = workerStory.find((l) => l.action === 'payment.converged');
    expect(converged).toMatchObject({ orderId, paymentStatus: 'succeeded', outcome: 'confirmed' });
    for (const l of [...transitions, converged!]) {
      expect(l).toMatchObject({ level: 30, orderId, job: JobName.ProcessPaymentEvent });
      expect(l.jobId).toEqual(expect.any(String));
    }

    // nothing secret in either log — once the last work of the story (its two emails) is done
    await waitFor(
      'the worker to log both emails of the order sent',
      () => grep(worker.output(), orderId),
      {
        until: (lines) =>
          ['order_confirmation', 'payment_receipt'].every((kind) =>
            lines.some((l) => l.action === 'email.sent' && l.kind === kind),
          ),
        timeoutMs: 30_000,
      },
    );
    const all = api.output() + worker.output();
    for (const secret of [
      customer.accessToken,
      customer.refreshToken,
      TEST_PASSWORD,
      key,
      payKey,
      pay.body.clientSecret,
    ]) {
      expect(all).not.toContain(secret);
    }
  }, 90_000);
});
