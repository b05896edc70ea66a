import fc from 'fast-check';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { TEST_PASSWORD, createAdmin, login, registerCustomer } from '../support/auth';
import { createCategory, createProduct } from '../support/catalog';
import { newKey } from '../support/fixtures';
import { TestApp, bootTestApp } from '../support/test-app';

/**
 * Contract fuzzing (issue 10): every operation of the committed openapi.json gets malformed and
 * boundary input — wrong types, NUL and control characters, over-long strings, deep JSON,
 * invalid path parameters, huge and negative numbers, junk cursors, unknown query parameters,
 * odd content types — as an anonymous caller, a customer, an admin or with a forged token, with
 * and without an Idempotency-Key. Whatever the request:
 *   - the answer is never a 5xx;
 *   - every error is application/problem+json with a `code` and the request's `requestId`;
 *   - a refused request writes nothing (the business tables are the same before and after).
 * Seeded and bounded: RUNS random requests per operation, the same ones on every run, after
 * the sample itself from each caller and every body field set to each of FIELD_EDGES. A second
 * test checks each operation's answers in combination (401 anonymous or forged, 403 a customer
 * on admin routes, a malformed path id or a query value the document rules out 400, every keyed POST replayed for its caller only and 422
 * elsewhere).
 */

// (30: the same cases every run — the seed is fixed — after ~660 fixed examples; FUZZ_RUNS raises it)
const RUNS = Number(process.env.FUZZ_RUNS ?? 30);
/** Operations no sample can succeed at (see the end of the test). */
const UNREACHABLE = [
  'POST /v1/products/{id}/reviews', // only a buyer of the product reviews it
  'POST /v1/admin/orders/{id}/fulfil', // only a paid order is fulfilled
  'POST /v1/admin/orders/{id}/refunds', // and refunded
  'POST /v1/webhooks/stripe', // signed by Stripe
  'POST /v1/webhooks/storage', // signed by the store
];
const SEED = 20261130;

interface Schema {
  $ref?: string;
  type?: string;
  format?: string;
  enum?: unknown[];
  example?: unknown;
  minimum?: number;
  maximum?: number;
  properties?: Record<string, Schema>;
  required?: string[];
  items?: Schema;
  allOf?: Schema[];
}

interface Parameter {
  name: string;
  in: 'path' | 'query' | 'header';
  schema?: Schema;
}

interface Operation {
  method: string;
  path: string;
  parameters: Parameter[];
  body?: Schema;
  secured: boolean;
}

const document = JSON.parse(readFileSync(join(__dirname, '..', '..', 'openapi.json'), 'utf8')) as {
  paths: Record<
    string,
    Record<
      string,
      {
        parameters?: Parameter[];
        requestBody?: { content: Record<string, { schema: Schema }> };
        security?: unknown[];
        responses?: Record<string, unknown>;
      }
    >
  >;
  components: { schemas: Record<string, Schema> };
};

function resolve(schema: Schema): Schema {
  if (schema.$ref) return resolve(document.components.schemas[schema.$ref.split('/').pop()!]);
  if (schema.allOf?.length === 1) return resolve(schema.allOf[0]);
  return schema;
}

const OPERATIONS: Operation[] = Object.entries(document.paths).flatMap(([path, ops]) =>
  Object.entries(ops).map(([method, op]) => ({
    method: method.toUpperCase(),
    path,
    parameters: op.parameters ?? [],
    body: op.requestBody?.content['application/json']?.schema,
    secured: (op.security ?? []).length > 0,
  })),
);

// ---------------------------------------------------------------------------------------------
// values

const CONTROL = ['\u0000', 'a\u0000b', '\u0007', '\u001b[2J', '\u007f', 'x\u0008y', '\u000b'];
const odd = [
  '',
  ' ',
  'x'.repeat(300),
  'x'.repeat(20_000),
  '😀'.repeat(80),
  '\ud800',
  "'; DROP TABLE orders; --",
  '../../etc/passwd',
  '%00',
  '{{7*7}}',
  '<script>alert(1)</script>',
  '1e400',
  'NaN',
  '-0',
  '00000000-0000-0000-0000-00000000000g',
];
const badString = fc.oneof(
  fc.constantFrom(...CONTROL, ...odd),
  fc.string({ unit: 'binary', maxLength: 40 }),
);
const badNumber = fc.oneof(
  fc.constantFrom(
    -1,
    0,
    1.5,
    -0.0001,
    1e30,
    -1e30,
    2 ** 53,
    2 ** 63,
    Number.MAX_SAFE_INTEGER,
    1e308,
    1001,
    1_000_000_001,
  ),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
);
const wrongType = fc.constantFrom<unknown>(null, true, [], {}, [1, 2], { a: 1 }, 'string', 123, [
  null,
]);
const deepJson = (depth: number) => `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;
const deepArray = (depth: number) => `${'['.repeat(depth)}1${']'.repeat(depth)}`;
/** encodeURIComponent for any string (lone surrogates become U+FFFD, as on the wire). */
const encode = (s: string) => encodeURIComponent(Buffer.from(s, 'utf8').toString('utf8'));
const cursorOf = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
const junkCursor = fc.oneof(
  fc.constantFrom(
    'bad',
    '',
    'x'.repeat(600),
    cursorOf({ k: 'x', i: 'y', t: 'z', m: 'q' }),
    cursorOf({ k: 1.5, i: randomUUID(), t: new Date().toISOString(), m: 1 }),
    cursorOf({ k: '2026-02-30 10:00:00+00', i: randomUUID(), t: 'now', m: 1 }),
    cursorOf({ c: 'yesterday', i: randomUUID() }),
    cursorOf({ t: new Date().toISOString(), i: '\u0000' }),
    cursorOf([1, 2, 3]),
    cursorOf(null),
  ),
  fc.json({ maxDepth: 3 }).map((j) => Buffer.from(j).toString('base64url')),
  badString,
);

// ---------------------------------------------------------------------------------------------
// fixtures and samples

interface Fixtures {
  productId: string;
  doomedProductId: string;
  categoryId: string;
  orderId: string;
  tokens: Record<'customer' | 'admin', string>;
  emails: Record<'customer' | 'admin', string>;
  /** An order of the customer's that no other operation cancels (payment start). */
  payableOrderId: string;
  /** A spare session's refresh token (refresh; logout after it). */
  refreshToken: string;
}

let serial = 0;

/** A value the schema accepts, so a mutation elsewhere reaches deeper code. */
function sample(schema: Schema, name: string, fx: Fixtures, op = ''): unknown {
  const s = resolve(schema);
  if (s.enum?.length) return s.enum[0];
  if (s.type === 'object' || s.properties) {
    return Object.fromEntries(
      Object.entries(s.properties ?? {}).map(([key, child]) => [key, sample(child, key, fx, op)]),
    );
  }
  if (s.type === 'array') return [sample(s.items ?? {}, name, fx, op)];
  // a price as a shop has them: a product repriced to 1 paisa could no longer be ordered (under
  // the smallest charge, ORDER_MINIMUM_AMOUNT)
  if (name === 'amount' && (s.type === 'number' || s.type === 'integer')) return 24900;
  if (s.type === 'number' || s.type === 'integer') return Math.max(1, s.minimum ?? 1);
  if (s.type === 'boolean') return true;
  if (s.format === 'uuid') return /category/i.test(name) ? fx.categoryId : fx.productId;
  switch (name) {
    case 'email':
      // a sign-in reaches the password check with a known account; a registration needs a new one
      return op === 'login'
        ? fx.emails.customer
        : `fuzz-${serial++}-${randomUUID().slice(0, 8)}@test.local`;
    case 'refreshToken':
      return fx.refreshToken;
    case 'password':
    case 'newPassword':
      return 'correct-horse-battery';
    case 'currency':
      return 'INR';
    case 'slug':
      return `fuzz-${randomUUID().slice(0, 8)}`;
    default:
      return typeof s.example === 'string' ? s.example : 'valid text';
  }
}

/** Every path inside a sample (leaves and containers), as key lists. */
function pathsOf(value: unknown, prefix: (string | number)[] = []): (string | number)[][] {
  if (typeof value !== 'object' || value === null) return [prefix];
  const entries = Array.isArray(value)
    ? value.map((v, i) => [i, v] as const)
    : Object.entries(value);
  return [prefix, ...entries.flatMap(([k, v]) => pathsOf(v, [...prefix, k]))];
}

function replaceAt(value: unknown, path: (string | number)[], replacement: unknown): unknown {
  if (path.length === 0) return replacement;
  const copy = (Array.isArray(value) ? [...value] : { ...(value as object) }) as Record<
    string | number,
    unknown
  >;
  copy[path[0]] = replaceAt(copy[path[0]], path.slice(1), replacement);
  return copy;
}

function pathValue(op: Operation, param: string, fx: Fixtures): string {
  if (op.method === 'DELETE' && op.path.startsWith('/v1/admin/products/'))
    return fx.doomedProductId;
  if (
    op.path.startsWith('/v1/products/') ||
    op.path.startsWith('/v1/admin/products/') ||
    param === 'productId'
  )
    return fx.productId;
  if (op.path.startsWith('/v1/dev/payment-intents/')) return `pi_sim_${randomUUID()}`;
  if (op.path.endsWith('/payment')) return fx.payableOrderId;
  return fx.orderId;
}

// ---------------------------------------------------------------------------------------------
// requests

type Caller = 'anonymous' | 'customer' | 'admin' | 'forged';
type BodyMutation =
  | { kind: 'sample' }
  | { kind: 'field'; pick: number; value: unknown }
  | { kind: 'unknown-field'; value: unknown }
  | { kind: 'whole'; value: unknown }
  | { kind: 'raw'; text: string };

interface FuzzCase {
  caller: Caller;
  idempotencyKey: string | undefined;
  path: Record<string, string | undefined>;
  query: Record<string, string | string[] | undefined>;
  unknownQuery: [string, string] | undefined;
  body: BodyMutation;
  contentType: string | undefined;
  signature: string | undefined;
}

const pathArb = fc.oneof(
  { arbitrary: fc.constant(undefined), weight: 3 }, // the fixture's id
  {
    arbitrary: fc.oneof(
      fc.constantFrom(
        'not-a-uuid',
        'ffffffff-ffff-ffff-ffff-ffffffffffff',
        '00000000-0000-0000-0000-00000000000g',
        '%00',
        'a%00b',
        '%zz',
        '..',
        '%2e%2e',
        '%2F',
        'a'.repeat(150),
        'a'.repeat(5000),
        encode('😀'),
        '-1',
        '1e400',
      ),
      badString.map((s) => encode(s)),
    ),
    weight: 2,
  },
);

/** A value the query parameter accepts (so the other parameters' mutations are what fails). */
function validQueryValue(name: string, schema: Schema | undefined, fx: Fixtures): string {
  const s = schema ? resolve(schema) : {};
  if (s.enum?.length) return String(s.enum[1 % s.enum.length]);
  switch (name) {
    case 'limit':
      return '2';
    case 'categoryId':
      return fx.categoryId;
    case 'q':
      return 'trail';
    default:
      return 'valid';
  }
}

const badQueryValueArb = fc.oneof(
  badString,
  badNumber.map(String),
  fc.constantFrom('101', '0', '-5', '1.5', 'nope', ' newest'),
  junkCursor,
  fc.constant(['1', '2']), // a repeated parameter
);

function caseArb(op: Operation): fc.Arbitrary<FuzzCase> {
  const pathParams = op.parameters.filter((p) => p.in === 'path');
  const queryParams = op.parameters.filter((p) => p.in === 'query');
  const bodyArb: fc.Arbitrary<BodyMutation> = fc.oneof(
    { arbitrary: fc.constant<BodyMutation>({ kind: 'sample' }), weight: 3 },
    {
      arbitrary: fc
        .record({
          pick: fc.nat(),
          value: fc.oneof(badString, badNumber, wrongType, fc.constant(JSON.parse(deepJson(40)))),
        })
        .map((m): BodyMutation => ({ kind: 'field', ...m })),
      weight: 5,
    },
    {
      arbitrary: fc
        .oneof(badString, wrongType)
        .map((value): BodyMutation => ({ kind: 'unknown-field', value })),
      weight: 1,
    },
    { arbitrary: wrongType.map((value): BodyMutation => ({ kind: 'whole', value })), weight: 1 },
    {
      arbitrary: fc
        .constantFrom(
          deepJson(33),
          deepJson(10_000),
          deepArray(10_000),
          `{"items":${deepArray(5000)}}`,
          '{"email":',
          '',
          'null',
          '{"a":1}x',
          '\u0000',
          '{"__proto__":{"admin":true}}',
          '{"constructor":{"prototype":{"x":1}}}',
        )
        .map((text): BodyMutation => ({ kind: 'raw', text })),
      weight: 2,
    },
  );
  return fc.record({
    caller: fc.constantFrom<Caller>(
      'customer',
      'customer',
      'customer',
      'admin',
      'admin',
      'admin',
      'anonymous',
      'forged',
    ),
    idempotencyKey: fc.constantFrom(
      undefined,
      undefined,
      'valid',
      'valid',
      'valid',
      '',
      'x'.repeat(300),
      ' ',
      'k\u00e9y',
    ),
    path: fc.record(Object.fromEntries(pathParams.map((p) => [p.name, pathArb]))),
    query: fc.record(
      Object.fromEntries(
        queryParams.map((p) => [
          p.name,
          fc.oneof(
            { arbitrary: fc.constant(undefined), weight: 3 },
            { arbitrary: fc.constant('valid' as const), weight: 3 }, // replaced by a valid value in build()
            { arbitrary: badQueryValueArb, weight: 2 },
          ),
        ]),
      ),
    ) as fc.Arbitrary<Record<string, string | string[] | undefined>>,
    unknownQuery: fc.oneof(
      { arbitrary: fc.constant(undefined), weight: 6 },
      {
        arbitrary: fc.tuple(
          fc.constantFrom(
            'cb',
            'limit[]',
            '__proto__',
            'constructor',
            'toString',
            'valueOf',
            'LIMIT',
            'sort ',
            'x\u0000',
          ),
          badString,
        ),
        weight: 1,
      },
    ),
    body: bodyArb,
    contentType: fc.constantFrom(
      'application/json',
      'application/json',
      'application/json',
      'application/json; charset=utf-8',
      'text/plain',
      'application/xml',
      'application/x-www-form-urlencoded',
      undefined,
    ),
    signature: fc.constantFrom(
      undefined,
      '',
      't=1,v1=abc',
      `t=${Math.floor(Date.now() / 1000)},v1=${'0'.repeat(64)}`,
      'garbage',
    ),
  });
}

/** Values every field of a write's body gets once, from a caller allowed to write it. */
const FIELD_EDGES: unknown[] = [null, -1, 2 ** 31, 1e308, '', 'x'.repeat(20_000), '\u0000', [], {}];

/**
 * The operation's sample, sent as a well-behaved client would, once per caller; then, for a
 * body, each of its fields replaced by each of FIELD_EDGES by a caller the route lets in — so
 * the services, not only the door, meet every edge value at least once.
 */
function validCases(op: Operation, fx: Fixtures): [FuzzCase][] {
  const base = (caller: Caller, body: BodyMutation): [FuzzCase] => [
    {
      caller,
      idempotencyKey: 'valid',
      path: Object.fromEntries(
        op.parameters.filter((p) => p.in === 'path').map((p) => [p.name, undefined]),
      ),
      // every query parameter with a value it accepts, but no cursor: only a page before hands
      // one out (a made-up one is a 400), and a well-behaved client's first page has none — with
      // one, no listing's sample got past validation, and only a lucky random case reached them
      query: Object.fromEntries(
        op.parameters
          .filter((p) => p.in === 'query')
          .map((p) => [p.name, p.name === 'cursor' ? undefined : 'valid']),
      ),
      unknownQuery: undefined,
      body,
      contentType: 'application/json',
      signature: undefined,
    },
  ];
  const samples = (['customer', 'admin', 'anonymous'] as const).map((caller) =>
    base(caller, { kind: 'sample' }),
  );
  if (!op.body) return samples;
  const caller: Caller = op.path.startsWith('/v1/admin/') ? 'admin' : 'customer';
  const leaves = pathsOf(sample(op.body, '', fx)).length;
  const edges = Array.from({ length: leaves }, (_, pick) =>
    FIELD_EDGES.map((value) => base(caller, { kind: 'field', pick, value })),
  ).flat();
  return [...samples, ...edges];
}

interface Sent {
  method: string;
  url: string;
  headers: Record<string, string>;
  body: string | undefined;
}

function build(op: Operation, c: FuzzCase, fx: Fixtures): Sent {
  const path = op.path.replace(
    /\{(\w+)\}/g,
    (_, name: string) => c.path[name] ?? pathValue(op, name, fx),
  );
  const query: string[] = [];
  for (const [name, chosen] of Object.entries(c.query)) {
    const param = op.parameters.find((p) => p.in === 'query' && p.name === name);
    const value = chosen === 'valid' ? validQueryValue(name, param?.schema, fx) : chosen;
    for (const v of value === undefined ? [] : Array.isArray(value) ? value : [value]) {
      query.push(`${encode(name)}=${encode(v)}`);
    }
  }
  if (c.unknownQuery) query.push(`${encode(c.unknownQuery[0])}=${encode(c.unknownQuery[1])}`);
  const headers: Record<string, string> = {};
  if (c.caller === 'customer' || c.caller === 'admin')
    headers.authorization = `Bearer ${fx.tokens[c.caller]}`;
  if (c.caller === 'forged') {
    const part = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
    headers.authorization = `Bearer ${part({ alg: 'none', typ: 'JWT' })}.${part({ sub: randomUUID(), role: 'admin' })}.`;
  }
  if (c.idempotencyKey !== undefined)
    headers['idempotency-key'] = c.idempotencyKey === 'valid' ? newKey() : c.idempotencyKey;
  if (c.signature !== undefined && op.path.includes('webhooks')) {
    headers['stripe-signature'] = c.signature;
    headers['x-storage-signature'] = c.signature;
  }
  let body: string | undefined;
  if (op.method !== 'GET') {
    const base = op.body
      ? sample(op.body, '', fx, op.path.endsWith('/auth/login') ? 'login' : '')
      : {};
    switch (c.body.kind) {
      case 'sample':
        body = JSON.stringify(base);
        break;
      case 'field': {
        const paths = pathsOf(base);
        body = JSON.stringify(replaceAt(base, paths[c.body.pick % paths.length], c.body.value));
        break;
      }
      case 'unknown-field':
        body = JSON.stringify({ ...(base as object), unexpected: c.body.value });
        break;
      case 'whole':
        body = JSON.stringify(c.body.value);
        break;
      case 'raw':
        body = c.body.text;
        break;
    }
    if (c.contentType) headers['content-type'] = c.contentType;
  }
  return {
    method: op.method,
    url: `${path}${query.length ? `?${query.join('&')}` : ''}`,
    headers,
    body,
  };
}

/** The first business table whose snapshot differs between `before` and `after`, if any. */
const changedTable = (
  before: Record<string, unknown>,
  after: Record<string, unknown>,
): string | undefined => Object.keys(before).find((table) => after[table] !== before[table]);

/** The business tables: counts, stock sums and row digests (a refused request changes none). */
const SNAPSHOT = `SELECT
  (SELECT count(*) FROM users) AS users,
  (SELECT count(*) FROM categories) AS categories,
  (SELECT md5(coalesce(string_agg(p::text, '|' ORDER BY p.id), '')) FROM products p) AS products,
  (SELECT md5(coalesce(string_agg(i::text, '|' ORDER BY i.product_id), '')) FROM inventory_items i) AS inventory,
  (SELECT count(*) FROM stock_movements) AS stock_movements,
  (SELECT count(*) FROM cart_items) AS cart_items,
  (SELECT md5(coalesce(string_agg(o.id::text || o.status || o.refunded_amount, '|' ORDER BY o.id), '')) FROM orders o) AS orders,
  (SELECT count(*) FROM order_items) AS order_items,
  (SELECT count(*) FROM order_status_history) AS order_status_history,
  (SELECT count(*) FROM idempotency_keys) AS idempotency_keys,
  (SELECT count(*) FROM outbox) AS outbox,
  (SELECT count(*) FROM reviews) AS reviews,
  (SELECT count(*) FROM product_images) AS product_images,
  (SELECT count(*) FROM payments) AS payments,
  (SELECT count(*) FROM refunds) AS refunds,
  (SELECT count(*) FROM webhook_events) AS webhook_events`;

describe('contract fuzzing: every operation of openapi.json', () => {
  let t: TestApp;
  let fx: Fixtures;
  const snapshot = async () => (await t.db.pool.query(SNAPSHOT)).rows[0] as Record<string, unknown>;

  beforeAll(async () => {
    t = await bootTestApp();
    const admin = await createAdmin(t);
    const customer = await registerCustomer(t.http);
    const category = await createCategory(t, admin.accessToken);
    const product = await createProduct(t, admin.accessToken, {
      stock: 1_000_000,
      categoryId: category.id,
    });
    const doomed = await createProduct(t, admin.accessToken, { stock: 10 });
    const order = await t.http.post(
      '/v1/orders',
      { items: [{ productId: product.id, quantity: 1 }] },
      { token: customer.accessToken, idempotencyKey: newKey() },
    );
    expect(order.status).toBe(201);
    const payable = await t.http.post(
      '/v1/orders',
      { items: [{ productId: product.id, quantity: 1 }] },
      { token: customer.accessToken, idempotencyKey: newKey() },
    );
    expect(payable.status).toBe(201);
    const spare = await login(t.http, customer.email, TEST_PASSWORD);
    fx = {
      productId: product.id,
      doomedProductId: doomed.id,
      categoryId: category.id,
      orderId: order.body.id,
      tokens: { customer: customer.accessToken, admin: admin.accessToken },
      emails: { customer: customer.email, admin: admin.email },
      payableOrderId: payable.body.id,
      refreshToken: spare.refreshToken,
    };
  });
  /**
   * Fresh sessions for both callers: a password change that went through (its sample keeps the
   * password) ends every session of the account, and without new ones every later operation
   * would only ever meet the access-token guard's 401.
   */
  const signInAgain = async () => {
    for (const who of ['customer', 'admin'] as const) {
      fx.tokens[who] = (await login(t.http, fx.emails[who], TEST_PASSWORD)).accessToken;
    }
  };
  afterAll(async () => {
    await t?.close();
  });

  it('every operation: no 5xx, errors are problem+json with code and requestId, refusals write nothing', async () => {
    expect(OPERATIONS.length).toBeGreaterThanOrEqual(30);
    const failures: string[] = [];
    const statuses: Record<string, Record<number, number>> = {};
    for (const [index, op] of OPERATIONS.entries()) {
      const seen: Record<number, number> = (statuses[`${op.method} ${op.path}`] = {});
      const examples = validCases(op, fx);
      const result = await fc.check(
        fc.asyncProperty(caseArb(op), async (c) => {
          const sent = build(op, c, fx);
          const before = await snapshot();
          const res = await fetch(`${t.baseUrl}${sent.url}`, {
            method: sent.method,
            headers: sent.headers,
            body: sent.body,
          });
          const text = await res.text();
          seen[res.status] = (seen[res.status] ?? 0) + 1;
          if (res.status < 300 && op.path === '/v1/me/password') await signInAgain();
          const where = `${sent.method} ${sent.url.slice(0, 200)} [${JSON.stringify(sent.headers).slice(0, 200)}] ${JSON.stringify(sent.body?.slice(0, 200))} → ${res.status} ${text.slice(0, 300)}`;
          if (res.status >= 500) throw new Error(`5xx: ${where}`);
          if (res.status < 400) return;
          if (!/^application\/problem\+json/.test(res.headers.get('content-type') ?? '')) {
            throw new Error(`not problem+json: ${where}`);
          }
          const problem = JSON.parse(text) as {
            code?: unknown;
            requestId?: unknown;
            status?: unknown;
            detail?: unknown;
          };
          if (typeof problem.code !== 'string' || !/^[A-Z_]+$/.test(problem.code))
            throw new Error(`no code: ${where}`);
          if (typeof problem.detail !== 'string') throw new Error(`no detail: ${where}`);
          if (
            typeof problem.requestId !== 'string' ||
            problem.requestId !== res.headers.get('x-request-id')
          ) {
            throw new Error(`no requestId: ${where}`);
          }
          if (problem.status !== res.status) throw new Error(`status mismatch: ${where}`);
          const wrote = changedTable(before, await snapshot());
          if (wrote) throw new Error(`refused request wrote ${wrote}: ${where}`);
        }),
        // first the sample itself, as each kind of caller would send it: every operation's
        // services are reached at least by these, whatever the random cases hit
        // (fast-check counts them in numRuns)
        { seed: SEED + index, numRuns: RUNS + examples.length, endOnFailure: true, examples },
      );
      if (result.failed) {
        const error =
          result.errorInstance instanceof Error
            ? result.errorInstance.message
            : String(result.errorInstance);
        failures.push(`${op.method} ${op.path} (seed ${SEED + index}): ${error}`);
      }
    }
    // FUZZ_STATS=1 shows what the runs reached (status histogram per operation)
    if (process.env.FUZZ_STATS) console.log(JSON.stringify(statuses, null, 1));
    expect(failures).toEqual([]);
    // the samples reach the services: every operation a caller may use answered 2xx at least
    // once (none was only ever refused at the door), except those whose success needs what no
    // sample has — a live refresh token, a payable order, a signed webhook, a buyer's review
    const unreached = Object.entries(statuses)
      .filter(([, seen]) => !Object.keys(seen).some((status) => Number(status) < 300))
      .map(([name]) => name);
    expect(unreached.sort()).toEqual(UNREACHABLE.sort());
    // and every status an operation answered is one openapi.json declares for it (clients generate
    // their branches from it) — 431 too (a request head over Node's 16 KB, refused before routing)
    const undeclared = Object.entries(statuses).flatMap(([name, seen]) => {
      const [method, path] = name.split(' ');
      const declared = document.paths[path][method.toLowerCase()].responses ?? {};
      return Object.keys(seen)
        .filter((status) => !(status in declared))
        .map((status) => `${name} → ${status}`);
    });
    expect(undeclared).toEqual([]);
    // and the service is still healthy afterwards
    expect((await t.http.get('/health/ready')).status).toBe(200);
    expect((await t.http.get(`/v1/products/${fx.productId}`)).status).toBe(200);
  }, 240_000); // every operation × every caller × malformed inputs: ~60 s at 60 runs, ~30 s at 30, on a loaded 2-core machine

  /**
   * The features in combination, for every operation of the document — what the fuzzing above
   * only checks as "not a 5xx": the bearer routes refuse an anonymous caller and a forged token
   * (401), the admin routes a customer (403), writing nothing; and every POST that honours an
   * Idempotency-Key and whose sample succeeds (seven of eleven: a review, a fulfilment, a refund
   * and the webhooks need what no sample has — their own tests replay them) replays it for the same caller (same status and
   * body, `Idempotent-Replayed`, nothing written), refuses it with another body (422, nothing
   * written), and never replays it for another customer (their own order: 404, not the answer).
   */
  it('every operation: 401 anonymous or forged, 403 a customer on admin routes; every keyed POST replays for its caller only (never for another customer or admin), 422 with another body', async () => {
    // fresh orders: the fuzzing above may have cancelled or paid the fixtures'
    const order = async () =>
      (
        await t.http.post(
          '/v1/orders',
          { items: [{ productId: fx.productId, quantity: 1 }] },
          { token: fx.tokens.customer, idempotencyKey: newKey() },
        )
      ).body.id as string;
    await signInAgain();
    const own: Fixtures = { ...fx, orderId: await order(), payableOrderId: await order() };
    const other = await registerCustomer(t.http);
    const otherAdmin = await createAdmin(t);
    const send = async (sent: Sent, headers: Record<string, string> = {}, body = sent.body) => {
      const res = await fetch(`${t.baseUrl}${sent.url}`, {
        method: sent.method,
        headers: { ...sent.headers, ...headers },
        body,
      });
      const text = await res.text();
      return {
        status: res.status,
        replayed: res.headers.get('idempotent-replayed'),
        text,
        code: res.status >= 400 ? (JSON.parse(text) as { code?: string }).code : undefined,
      };
    };
    const failures: string[] = [];
    type Answer = Awaited<ReturnType<typeof send>>;
    /** Sends `request`; records what is wrong with its answer (`problem`) and any table it wrote. */
    const unchangedBy = async (
      what: string,
      request: () => Promise<Answer>,
      problem: (res: Answer) => string | undefined,
    ) => {
      const before = await snapshot();
      const res = await request();
      const wrong = problem(res);
      if (wrong) failures.push(`${what}: ${wrong}`);
      const wrote = changedTable(before, await snapshot());
      if (wrote) failures.push(`${what} wrote ${wrote}`);
    };
    /** The answer is a refusal with this status (and code). */
    const refused = (status: number, code?: string) => (res: Answer) =>
      res.status !== status || (code && res.code !== code)
        ? `${res.status} ${res.code ?? ''}, expected ${status} ${code ?? ''}`
        : undefined;
    const sampleOf = (op: Operation, caller: Caller) =>
      validCases(op, own)[
        (['customer', 'admin', 'anonymous'] as const).indexOf(caller as 'customer')
      ][0];
    const replayed: string[] = [];
    for (const op of OPERATIONS) {
      const name = `${op.method} ${op.path}`;
      const security = document.paths[op.path][op.method.toLowerCase()].security ?? [];
      if (security.some((s) => typeof s === 'object' && s !== null && 'bearer' in s)) {
        for (const [caller, code] of [
          ['anonymous', 'UNAUTHENTICATED'],
          ['forged', 'TOKEN_INVALID'],
        ] as const) {
          const sent = build(op, { ...sampleOf(op, 'customer'), caller }, own);
          await unchangedBy(`${name} as ${caller}`, () => send(sent), refused(401, code));
        }
      }
      if (op.path.startsWith('/v1/admin/')) {
        const sent = build(op, sampleOf(op, 'customer'), own);
        await unchangedBy(`${name} as a customer`, () => send(sent), refused(403, 'FORBIDDEN'));
      }
      // a malformed id in the path, from a caller the route lets in: 400, nothing written (not a
      // 404 that read the database with it, nor a 2xx that ignored it)
      for (const param of op.parameters.filter((p) => p.in === 'path')) {
        const caller: Caller = op.path.startsWith('/v1/admin/') ? 'admin' : 'customer';
        for (const bad of [
          'not-a-uuid',
          '00000000-0000-0000-0000-00000000000g',
          `${randomUUID()}x`,
        ]) {
          const sent = build(op, { ...sampleOf(op, caller), path: { [param.name]: bad } }, own);
          await unchangedBy(
            `${name} with ${param.name} ${bad}`,
            () => send(sent, { 'idempotency-key': newKey() }),
            refused(400),
          );
        }
      }
      // a query value the document rules out: a number outside its range, a value outside its
      // enum, a forged cursor, a malformed uuid — 400, never a filter quietly dropped
      for (const param of op.parameters.filter((p) => p.in === 'query')) {
        const schema = resolve(param.schema ?? {});
        const bad = [
          ...(schema.type === 'integer'
            ? [
                String((schema.maximum ?? 1000) + 1),
                String((schema.minimum ?? 0) - 1),
                '1.5',
                'ten',
              ]
            : []),
          ...(schema.enum
            ? [
                'BOGUS',
                String(schema.enum[0]).toLowerCase() === schema.enum[0]
                  ? String(schema.enum[0]).toUpperCase()
                  : String(schema.enum[0]).toLowerCase(),
              ]
            : []),
          ...(param.name === 'cursor' ? ['eyJmb3JnZWQiOnRydWV9', 'not a cursor'] : []),
          ...(schema.format === 'uuid' ? ['not-a-uuid'] : []),
        ];
        const caller: Caller = op.path.startsWith('/v1/admin/') ? 'admin' : 'customer';
        for (const value of bad) {
          const sent = build(op, { ...sampleOf(op, caller), query: { [param.name]: value } }, own);
          await unchangedBy(`${name} with ${param.name}=${value}`, () => send(sent), refused(400));
        }
      }
      const key = (op.parameters.find((p) => p.in === 'header' && p.name === 'Idempotency-Key') ??
        null) as { description?: string } | null;
      if (op.method !== 'POST' || !key || /ignored/i.test(key.description ?? '')) continue;
      const caller: Caller = op.path.startsWith('/v1/admin/') ? 'admin' : 'customer';
      const sent = build(op, sampleOf(op, caller), own);
      // a new product needs a SKU of its own (the sample's is the same every time)
      const body = sent.body?.includes('"sku"')
        ? JSON.stringify({
            ...(JSON.parse(sent.body) as object),
            sku: `REPLAY-${randomUUID().slice(0, 8)}`,
          })
        : sent.body;
      const headers = { 'idempotency-key': newKey() };
      const first = await send(sent, headers, body);
      if (first.status >= 300) continue; // no sample succeeds at it (UNREACHABLE): nothing stored to replay
      replayed.push(name);
      await unchangedBy(
        `${name} replayed`,
        () => send(sent, headers, body),
        (again) =>
          again.status !== first.status || again.replayed !== 'true' || again.text !== first.text
            ? `${again.status} replayed=${again.replayed}, first ${first.status}`
            : undefined,
      );
      // the key on another request: another order or product of the path (a valid request), or,
      // without one, another body
      if (op.path.includes('{id}')) {
        const otherId = op.path.startsWith('/v1/orders/')
          ? await order()
          : (await createProduct(t, fx.tokens.admin, { stock: 5 })).id;
        const elsewhere = build(op, { ...sampleOf(op, caller), path: { id: otherId } }, own);
        await unchangedBy(
          `${name} on another ${op.path.split('/')[op.path.startsWith('/v1/admin/') ? 3 : 2]}`,
          () => send(elsewhere, headers, body),
          refused(422, 'IDEMPOTENCY_KEY_REUSED'),
        );
      } else {
        const otherBody = JSON.stringify({
          ...(JSON.parse(body ?? '{}') as object),
          replayProbe: 1,
        });
        await unchangedBy(
          `${name} with another body`,
          () => send(sent, headers, otherBody),
          refused(422, 'IDEMPOTENCY_KEY_REUSED'),
        );
      }
      // the key is the caller's: another caller's same request with it is theirs — a new order, a
      // second adjustment or image, or a refusal on its own merits (someone else's order: 404;
      // the SKU or slug now taken) — never this caller's stored answer
      const another = caller === 'admin' ? otherAdmin : caller === 'customer' ? other : null;
      if (another) {
        const theirs = await send(
          sent,
          { ...headers, authorization: `Bearer ${another.accessToken}` },
          body,
        );
        if (theirs.replayed === 'true' || theirs.text === first.text)
          failures.push(`${name} replayed for another ${caller}: ${theirs.status}`);
        if (caller === 'customer' && op.path.includes('{id}') && theirs.status !== 404)
          failures.push(`${name} by another customer: ${theirs.status}, expected 404`);
      }
    }
    expect(failures).toEqual([]);
    // every keyed POST a sample can succeed at was replayed (none skipped by a sample gone stale)
    expect(replayed.sort()).toEqual(
      [
        'POST /v1/admin/categories',
        'POST /v1/admin/products',
        'POST /v1/admin/products/{id}/images',
        'POST /v1/admin/products/{id}/stock-adjustments',
        'POST /v1/orders',
        'POST /v1/orders/{id}/cancel',
        'POST /v1/orders/{id}/payment',
      ].sort(),
    );
  }, 120_000);
});
