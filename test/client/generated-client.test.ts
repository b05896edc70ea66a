import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { INestApplicationContext } from '@nestjs/common';
import createClient from 'openapi-fetch';
import ts from 'typescript';
import { AccountService } from '../../src/auth/account.service';
import { TestApp, bootTestApp } from '../support/test-app';
import { bootTestWorker } from '../support/test-worker';
import { waitFor } from '../support/wait-for';
import type { components, paths } from './schema';
import { CLIENT_SCHEMA } from './schema-path';

/*
 * A client generated from the committed openapi.json (openapi-typescript → schema.d.ts,
 * openapi-fetch) drives the customer and admin flows against the real app, as a web or
 * mobile team would: every field read here is typed by the document, every problem is the
 * typed Problem. This file holds no type assertion, non-null assertion or `any` (ESLint
 * enforces it for test/client/**, and the first test proves it on the source).
 */

type Problem = components['schemas']['Problem'];

const ROOT = join(__dirname, '..', '..');
const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const PASSWORD = 'correct-horse-battery';

/** Throws with the problem when a call that should succeed did not (narrows `data`). */
function ok<T>(result: { data?: T; error?: unknown; response: Response }): T {
  if (result.data === undefined) {
    throw new Error(`HTTP ${result.response.status}: ${JSON.stringify(result.error)}`);
  }
  return result.data;
}

/** The typed problem of a call that should fail, after checking its media type and status. */
function problem(result: { error?: Problem; response: Response }, status: number): Problem {
  expect(result.response.status).toBe(status);
  expect(result.response.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  if (result.error === undefined)
    throw new Error(`expected a problem, got HTTP ${result.response.status}`);
  expect(result.error.status).toBe(status);
  expect(result.error.requestId).toBe(result.response.headers.get('x-request-id'));
  expect(typeof result.error.type).toBe('string');
  expect(typeof result.error.title).toBe('string');
  return result.error;
}

const bearer = (token: string) => ({ Authorization: `Bearer ${token}` });

describe('generated client (openapi-typescript + openapi-fetch) against the running app', () => {
  let t: TestApp;
  let worker: INestApplicationContext;
  let api: ReturnType<typeof createClient<paths>>;

  beforeAll(async () => {
    t = await bootTestApp();
    worker = await bootTestWorker(t.config);
    api = createClient<paths>({ baseUrl: t.baseUrl });
  });
  afterAll(async () => {
    await worker?.close();
    await t?.close();
  });

  it('compiles against a schema.d.ts that is what openapi-typescript makes of the committed openapi.json', () => {
    const dir = mkdtempSync(join(tmpdir(), 'client-schema-'));
    try {
      const out = join(dir, 'schema.d.ts');
      execFileSync(
        process.execPath,
        [
          join(ROOT, 'node_modules', 'openapi-typescript', 'bin', 'cli.js'),
          'openapi.json',
          '-o',
          out,
        ],
        { cwd: ROOT, stdio: 'pipe' },
      );
      // run `npm run openapi` when this fails: it rewrites openapi.json and the schema
      expect(readFileSync(join(ROOT, CLIENT_SCHEMA), 'utf8')).toBe(readFileSync(out, 'utf8'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('holds no cast: no `as`, no `<T>x`, no non-null `!`, no `any` in this file', () => {
    const file = ts.createSourceFile(
      __filename,
      readFileSync(__filename, 'utf8'),
      ts.ScriptTarget.ES2022,
      true,
    );
    const casts: string[] = [];
    const visit = (node: ts.Node): void => {
      if (
        ts.isAsExpression(node) ||
        ts.isTypeAssertionExpression(node) ||
        ts.isNonNullExpression(node) ||
        ts.isSatisfiesExpression(node) ||
        node.kind === ts.SyntaxKind.AnyKeyword
      ) {
        casts.push(
          `${file.getLineAndCharacterOfPosition(node.getStart()).line + 1}: ${node.getText()}`,
        );
      }
      ts.forEachChild(node, visit);
    };
    visit(file);
    expect(casts).toEqual([]);
  });

  it('serves typed probes: liveness and readiness', async () => {
    expect(ok(await api.GET('/health/live'))).toEqual({ status: 'ok' });
    const ready = ok(await api.GET('/health/ready'));
    expect(ready.status).toBe('ok');
    expect(ready.details.database?.status).toBe('up');
    expect(ready.details.redis?.status).toBe('up');
  });

  it('runs the admin and customer flows with typed bodies and typed problems', async () => {
    // ── admin: sign in (the first admin comes from `npm run admin:create`), catalog, stock ──
    const adminEmail = `admin-${randomUUID()}@test.local`;
    await t.app.get(AccountService).ensureAccount(adminEmail, PASSWORD, 'admin', 'Admin');
    const adminLogin = ok(
      await api.POST('/v1/auth/login', { body: { email: adminEmail, password: PASSWORD } }),
    );
    expect(adminLogin.user.role).toBe('admin');
    const admin = bearer(adminLogin.accessToken);

    const category = ok(
      await api.POST('/v1/admin/categories', {
        headers: admin,
        body: { name: 'Tea', slug: `tea-${randomUUID().slice(0, 8)}` },
      }),
    );
    expect(category.id).toMatch(UUID);
    expect(category.name).toBe('Tea');

    const sku = `TEA-${randomUUID().slice(0, 8)}`;
    const created = await api.POST('/v1/admin/products', {
      headers: admin,
      body: {
        sku,
        name: 'Assam tea, 250 g',
        description: 'Malty, strong black tea.',
        price: { amount: 24900, currency: 'INR' },
        categoryId: category.id,
        initialStock: 3,
      },
    });
    expect(created.response.status).toBe(201);
    const product = ok(created);
    expect(product.id).toMatch(UUID);
    expect(product.sku).toBe(sku);
    expect(product.name).toBe('Assam tea, 250 g');
    expect(product.description).toBe('Malty, strong black tea.');
    expect(product.price).toEqual({ amount: 24900, currency: 'INR' });
    expect(product.availableQuantity).toBe(3);
    expect(product.rating).toEqual({ average: null, count: 0 });
    expect(product.categoryId).toBe(category.id);
    expect(product.imageUrl).toBeNull();
    expect(product.images).toEqual([]);
    expect(product.active).toBe(true);
    expect(product.createdAt).toMatch(ISO_TIME);
    expect(product.updatedAt).toMatch(ISO_TIME);

    const duplicate = await api.POST('/v1/admin/products', {
      headers: admin,
      body: {
        sku,
        name: 'Again',
        description: '',
        price: { amount: 1, currency: 'INR' },
        initialStock: 0,
      },
    });
    expect(problem(duplicate, 409).code).toBe('SKU_TAKEN');

    const stock = ok(
      await api.POST('/v1/admin/products/{id}/stock-adjustments', {
        headers: admin,
        params: { path: { id: product.id } },
        body: { delta: 2, reason: 'Delivery from supplier' },
      }),
    );
    expect(stock).toEqual({ onHand: 5, reserved: 0, available: 5 });
    const tooMuch = await api.POST('/v1/admin/products/{id}/stock-adjustments', {
      headers: admin,
      params: { path: { id: product.id } },
      body: { delta: -6, reason: 'Shrinkage' },
    });
    expect(problem(tooMuch, 409).code).toBe('STOCK_BELOW_RESERVED');

    // ── customer: register → login → products → categories → order → payment → order → cancel → refresh ──
    const email = `asha-${randomUUID()}@test.local`;
    const registered = await api.POST('/v1/auth/register', {
      body: { email, password: PASSWORD, name: 'Asha' },
    });
    expect(registered.response.status).toBe(201);
    const signup = ok(registered);
    expect(signup.user).toEqual({ id: signup.user.id, email, name: 'Asha', role: 'customer' });
    expect(signup.user.id).toMatch(UUID);
    expect(signup.expiresIn).toBeGreaterThan(0);
    const taken = await api.POST('/v1/auth/register', {
      body: { email, password: PASSWORD, name: 'Asha' },
    });
    expect(problem(taken, 409).code).toBe('EMAIL_TAKEN');
    const weak = await api.POST('/v1/auth/register', {
      body: { email: `x-${email}`, password: 'short', name: 'X' },
    });
    const invalid = problem(weak, 400);
    expect(invalid.code).toBe('VALIDATION_FAILED');
    expect(invalid.errors?.map((e) => e.field)).toEqual(['password']);
    const wrong = await api.POST('/v1/auth/login', {
      body: { email, password: 'not-the-password' },
    });
    expect(problem(wrong, 401).code).toBe('INVALID_CREDENTIALS');

    const session = ok(await api.POST('/v1/auth/login', { body: { email, password: PASSWORD } }));
    expect(session.user.id).toBe(signup.user.id);
    const me = bearer(session.accessToken);
    expect(ok(await api.GET('/v1/me', { headers: me }))).toEqual(signup.user);

    const page = ok(
      await api.GET('/v1/products', {
        params: { query: { categoryId: category.id, sort: 'newest', limit: 10 } },
      }),
    );
    expect(page.nextCursor).toBeNull();
    expect(page.items.map((p) => p.id)).toEqual([product.id]);
    const listed = page.items[0];
    expect(listed?.availableQuantity).toBe(5);
    expect(listed?.price.amount).toBe(24900);
    const categories = ok(await api.GET('/v1/categories'));
    expect(categories.items).toContainEqual({ id: category.id, name: 'Tea', slug: category.slug });

    const noKey = await api.POST('/v1/orders', {
      headers: me,
      params: { header: { 'Idempotency-Key': '' } },
      body: { items: [{ productId: product.id, quantity: 1 }] },
    });
    expect(problem(noKey, 400).code).toMatch(/^IDEMPOTENCY_KEY_(MISSING|INVALID)$/);
    const short = await api.POST('/v1/orders', {
      headers: me,
      params: { header: { 'Idempotency-Key': randomUUID() } },
      body: { items: [{ productId: product.id, quantity: 6 }] },
    });
    const shortProblem = problem(short, 409);
    expect(shortProblem.code).toBe('INSUFFICIENT_STOCK');
    // the products short are typed members of the problem, read without a cast
    expect(shortProblem.products?.map((p) => [p.productId, p.requested])).toEqual([
      [product.id, 6],
    ]);

    const placed = await api.POST('/v1/orders', {
      headers: me,
      params: { header: { 'Idempotency-Key': randomUUID() } },
      body: { items: [{ productId: product.id, quantity: 2 }] },
    });
    expect(placed.response.status).toBe(201);
    const order = ok(placed);
    expect(order.id).toMatch(UUID);
    expect(order.status).toBe('INVENTORY_RESERVED');
    expect(order.cancellationReason).toBeUndefined();
    expect(order.items).toEqual([
      {
        productId: product.id,
        sku,
        name: 'Assam tea, 250 g',
        quantity: 2,
        unitPrice: { amount: 24900, currency: 'INR' },
        lineTotal: { amount: 49800, currency: 'INR' },
      },
    ]);
    expect(order.total).toEqual({ amount: 49800, currency: 'INR' });
    expect(order.refunded).toEqual({ amount: 0, currency: 'INR' });
    expect(order.reservationExpiresAt).toMatch(ISO_TIME);
    expect(order.createdAt).toMatch(ISO_TIME);
    expect(order.updatedAt).toMatch(ISO_TIME);

    const started = await api.POST('/v1/orders/{id}/payment', {
      headers: me,
      params: { header: { 'Idempotency-Key': randomUUID() }, path: { id: order.id } },
    });
    expect(started.response.status).toBe(201);
    const payment = ok(started);
    expect(payment.paymentIntentId).toEqual(expect.any(String));
    expect(payment.clientSecret).toEqual(expect.any(String));
    expect(payment.clientSecret.length).toBeGreaterThan(0);
    expect(payment.status).toBe('requires_payment_method');
    expect(payment.amount).toEqual({ amount: 49800, currency: 'INR' });

    const detail = ok(
      await api.GET('/v1/orders/{id}', { headers: me, params: { path: { id: order.id } } }),
    );
    expect(detail.status).toBe('PAYMENT_PENDING');
    expect(detail.payment?.paymentIntentId).toBe(payment.paymentIntentId);
    expect(detail.payment?.provider).toBe('simulated');
    expect(detail.payment?.amount).toEqual({ amount: 49800, currency: 'INR' });
    expect(detail.payment?.refunds).toEqual([]);
    expect(detail.history.map((h) => [h.from, h.to])).toEqual([
      [null, 'CREATED'],
      ['CREATED', 'INVENTORY_RESERVED'],
      ['INVENTORY_RESERVED', 'PAYMENT_PENDING'],
    ]);
    for (const h of detail.history) {
      expect(h.at).toMatch(ISO_TIME);
      expect(h.reason === null || typeof h.reason === 'string').toBe(true);
    }
    const unknown = await api.GET('/v1/orders/{id}', {
      headers: me,
      params: { path: { id: randomUUID() } },
    });
    expect(problem(unknown, 404).code).toBe('ORDER_NOT_FOUND');

    const cancelled = ok(
      await api.POST('/v1/orders/{id}/cancel', {
        headers: me,
        params: { header: { 'Idempotency-Key': randomUUID() }, path: { id: order.id } },
      }),
    );
    expect(cancelled.status).toBe('CANCELLED');
    expect(cancelled.cancellationReason).toBe('CUSTOMER_REQUESTED');
    expect(cancelled.history.at(-1)?.to).toBe('CANCELLED');

    const refreshed = ok(
      await api.POST('/v1/auth/refresh', { body: { refreshToken: session.refreshToken } }),
    );
    expect(refreshed.refreshToken).not.toBe(session.refreshToken);
    expect(refreshed.user.id).toBe(signup.user.id);
    const reused = await api.POST('/v1/auth/refresh', {
      body: { refreshToken: session.refreshToken },
    });
    expect(problem(reused, 401).code).toBe('REFRESH_TOKEN_REUSED');

    // ── a customer is not an admin; no token is nobody ──
    const buyer = bearer(signup.accessToken); // the registration's own session, still valid
    const forbidden = await api.POST('/v1/admin/products/{id}/stock-adjustments', {
      headers: buyer,
      params: { path: { id: product.id } },
      body: { delta: 1, reason: 'mine now' },
    });
    expect(problem(forbidden, 403).code).toBe('FORBIDDEN');
    expect(problem(await api.GET('/v1/cart'), 401).code).toBe('UNAUTHENTICATED');

    // ── admin: refund a paid order ──
    const paidOrder = ok(
      await api.POST('/v1/orders', {
        headers: buyer,
        params: { header: { 'Idempotency-Key': randomUUID() } },
        body: { items: [{ productId: product.id, quantity: 1 }] },
      }),
    );
    const intent = ok(
      await api.POST('/v1/orders/{id}/payment', {
        headers: buyer,
        params: { header: { 'Idempotency-Key': randomUUID() }, path: { id: paidOrder.id } },
      }),
    );
    // the simulated gateway's development-only confirm route is not in the document: plain fetch
    const confirm = await fetch(
      `${t.baseUrl}/v1/dev/payment-intents/${intent.paymentIntentId}/confirm`,
      {
        method: 'POST',
        headers: { ...buyer, 'content-type': 'application/json' },
        body: JSON.stringify({ outcome: 'succeeded' }),
      },
    );
    expect(confirm.status).toBe(200);
    const status = await waitFor(
      'the paid order to be confirmed',
      async () =>
        ok(
          await api.GET('/v1/orders/{id}', {
            headers: buyer,
            params: { path: { id: paidOrder.id } },
          }),
        ).status,
      { until: (s) => s === 'CONFIRMED' },
    );
    expect(status).toBe('CONFIRMED');
    const notCancellable = await api.POST('/v1/orders/{id}/cancel', {
      headers: buyer,
      params: { header: { 'Idempotency-Key': randomUUID() }, path: { id: paidOrder.id } },
    });
    expect(problem(notCancellable, 409).code).toBe('ORDER_NOT_CANCELLABLE');

    const refundKey = randomUUID();
    const partial = await api.POST('/v1/admin/orders/{id}/refunds', {
      headers: admin,
      params: { header: { 'Idempotency-Key': refundKey }, path: { id: paidOrder.id } },
      body: { amount: { amount: 10000, currency: 'INR' } },
    });
    expect(partial.response.status).toBe(201);
    const refund = ok(partial);
    expect(refund.id).toMatch(UUID);
    expect(refund.orderId).toBe(paidOrder.id);
    expect(refund.amount).toEqual({ amount: 10000, currency: 'INR' });
    expect(refund.status).toBe('succeeded');
    expect(refund.reason).toBe('requested');
    expect(refund.createdAt).toMatch(ISO_TIME);

    const reusedKey = await api.POST('/v1/admin/orders/{id}/refunds', {
      headers: admin,
      params: { header: { 'Idempotency-Key': refundKey }, path: { id: paidOrder.id } },
      body: { amount: { amount: 20000, currency: 'INR' } },
    });
    expect(problem(reusedKey, 422).code).toBe('IDEMPOTENCY_KEY_REUSED');
    const exceeds = await api.POST('/v1/admin/orders/{id}/refunds', {
      headers: admin,
      params: { header: { 'Idempotency-Key': randomUUID() }, path: { id: paidOrder.id } },
      body: { amount: { amount: 20000, currency: 'INR' } },
    });
    expect(problem(exceeds, 409).code).toBe('REFUND_EXCEEDS_CAPTURED');
    const rest = ok(
      await api.POST('/v1/admin/orders/{id}/refunds', {
        headers: admin,
        params: { header: { 'Idempotency-Key': randomUUID() }, path: { id: paidOrder.id } },
        body: {},
      }),
    );
    expect(rest.amount).toEqual({ amount: 14900, currency: 'INR' });

    const refunded = ok(
      await api.GET('/v1/orders/{id}', { headers: buyer, params: { path: { id: paidOrder.id } } }),
    );
    expect(refunded.status).toBe('REFUNDED');
    expect(refunded.refunded).toEqual({ amount: 24900, currency: 'INR' });
    expect(refunded.payment?.refunded).toEqual({ amount: 24900, currency: 'INR' });
    expect(refunded.payment?.refunds.map((r) => r.amount.amount).sort((a, b) => a - b)).toEqual([
      10000, 14900,
    ]);
  });
});
