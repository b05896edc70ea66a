import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ERROR_STATUS } from '../../src/common/errors/error-codes';

/*
 * What the lint rulesets do not check about the committed openapi.json, but clients rely on
 * (API.md): the problem format on every error, security as the guards apply it, integers for
 * money and quantities, date-time and uuid formats, each header once, no development routes.
 * openapi.json is checked against the code by test/e2e/foundation.test.ts.
 */

interface Schema {
  $ref?: string;
  type?: string;
  format?: string;
  properties?: Record<string, Schema>;
  items?: Schema;
  allOf?: Schema[];
  enum?: unknown[];
  required?: string[];
}
interface Parameter {
  name: string;
  in: string;
  required?: boolean;
  schema?: Schema;
}
interface Response {
  content?: Record<string, { schema?: Schema }>;
  headers?: Record<string, unknown>;
}
interface Operation {
  operationId?: string;
  summary?: string;
  description?: string;
  tags?: string[];
  security?: Array<Record<string, string[]>>;
  parameters?: Parameter[];
  requestBody?: { required?: boolean; content: Record<string, { schema?: Schema }> };
  responses: Record<string, Response>;
}
interface Document {
  servers?: Array<{ url: string }>;
  tags?: Array<{ name: string; description?: string }>;
  paths: Record<string, Record<string, Operation>>;
  components: {
    schemas: Record<string, Schema>;
    securitySchemes: Record<string, { type: string; scheme?: string }>;
  };
}

const doc: Document = JSON.parse(readFileSync(join(__dirname, '..', '..', 'openapi.json'), 'utf8'));
const operations = Object.entries(doc.paths).flatMap(([path, item]) =>
  Object.entries(item).map(([method, op]) => ({
    where: `${method.toUpperCase()} ${path}`,
    path,
    op,
  })),
);
const byId = new Map(operations.map((o) => [o.op.operationId, o]));

// the routes without @Public() that must carry bearer security, and the public ones
const PUBLIC = [
  'getLiveness',
  'getReadiness',
  'register',
  'login',
  'refreshTokens',
  'logout',
  'listProducts',
  'getProduct',
  'listCategories',
  'listReviews',
  'listAlsoBought',
  'receiveStripeEvent',
];
// public to the guards, authenticated by a scheme of their own (not a client's access token)
const OWN_SCHEME: Record<string, unknown[]> = {
  receiveStorageNotification: [{ storageToken: [] }],
};

describe('the committed OpenAPI document', () => {
  it('has a server, described tags, and for every operation a summary, description and readable operationId', () => {
    expect(doc.servers?.length).toBeGreaterThan(0);
    const tags = new Set(doc.tags?.filter((t) => t.description).map((t) => t.name));
    for (const { where, op } of operations) {
      expect({ where, summary: Boolean(op.summary), description: Boolean(op.description) }).toEqual(
        {
          where,
          summary: true,
          description: true,
        },
      );
      expect(op.operationId).toMatch(/^[a-z][A-Za-z]+$/);
      for (const tag of op.tags ?? []) expect(tags).toContain(tag);
    }
    expect(byId.size).toBe(operations.length);
    expect([...byId.keys()]).toEqual(
      expect.arrayContaining(['createOrder', 'listProducts', 'startPayment', 'refundOrder']),
    );
  });

  it('marks exactly the @Public() routes `security: []` (but the storage webhook: its token scheme) and every other one bearer', () => {
    const publicIds = operations
      .filter(({ op }) => op.security?.length === 0)
      .map(({ op }) => op.operationId);
    expect(publicIds.sort()).toEqual([...PUBLIC].sort());
    for (const { where, op } of operations) {
      const own = OWN_SCHEME[op.operationId ?? ''];
      if (!PUBLIC.includes(op.operationId ?? ''))
        expect({ where, security: op.security }).toEqual({
          where,
          security: own ?? [{ bearer: [] }],
        });
      // OpenAPI ignores a header parameter named Authorization: a credential is a scheme or nothing
      expect({
        where,
        authorizationParameter: (op.parameters ?? []).some(
          (p) => 'name' in p && p.name.toLowerCase() === 'authorization',
        ),
      }).toEqual({
        where,
        authorizationParameter: false,
      });
    }
    expect(doc.components.securitySchemes.storageToken).toMatchObject({
      type: 'http',
      scheme: 'bearer',
    });
  });

  it('serves every 4xx and 5xx as application/problem+json with the Problem schema; 401 and 403 where protected; Retry-After on 429', () => {
    for (const { where, op } of operations) {
      const statuses = Object.keys(op.responses);
      expect({ where, has4xx: statuses.some((s) => s.startsWith('4')) }).toEqual({
        where,
        has4xx: true,
      });
      for (const [status, response] of Object.entries(op.responses)) {
        if (Number(status) < 400) continue;
        expect({ where, status, content: response.content }).toEqual({
          where,
          status,
          content: {
            'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } },
          },
        });
        if (status === '429') expect(response.headers).toHaveProperty('Retry-After');
      }
      // (the storage webhook's wrong token is a 400 WEBHOOK_SIGNATURE_INVALID, as Stripe's signature)
      if (op.security?.some((s) => 'bearer' in s))
        expect({ where, s401: statuses.includes('401') }).toEqual({ where, s401: true });
    }
    expect(byId.get('createProduct')?.op.responses).toHaveProperty('403');
    expect(byId.get('refundOrder')?.op.responses).toHaveProperty('403');
    // the HTTP server's own refusals, before any route: a slow request, an oversized head, an
    // Expect it cannot meet
    for (const { where, op } of operations)
      expect({ where, statuses: Object.keys(op.responses) }).toEqual({
        where,
        statuses: expect.arrayContaining(['408', '417', '431']),
      });
  });

  it('closes every request body the validation pipe checks to the properties it declares (an unknown one is a 400), not the webhooks', () => {
    const closed = (name: string, seen = new Set<string>()): string[] => {
      if (seen.has(name)) return [];
      seen.add(name);
      const schema = doc.components.schemas[name] as Schema & { additionalProperties?: unknown };
      const refs =
        JSON.stringify(schema.properties ?? {}).match(/#\/components\/schemas\/\w+/g) ?? [];
      return [
        ...(schema.additionalProperties === false ? [] : [name]),
        ...refs.flatMap((r) => closed(r.split('/').pop()!, seen)),
      ];
    };
    for (const { where, path, op } of operations) {
      const ref = op.requestBody?.content['application/json']?.schema?.$ref;
      if (!ref) continue;
      const open = closed(ref.split('/').pop()!);
      expect({ where, open }).toEqual({
        where,
        open: path.startsWith('/v1/webhooks/') ? open : [],
      });
      if (path.startsWith('/v1/webhooks/'))
        expect({ where, open }).not.toEqual({ where, open: [] });
    }
  });

  it('defines Problem per RFC 9457 with `code` an enum of every error code', () => {
    const problem = doc.components.schemas.Problem;
    expect(problem?.required?.sort()).toEqual([
      'code',
      'detail',
      'requestId',
      'status',
      'title',
      'type',
    ]);
    expect(Object.keys(problem?.properties ?? {}).sort()).toEqual([
      'code',
      'delta', // STOCK_BELOW_RESERVED's figures
      'detail',
      'details', // the readiness probe's dependencies
      'errors',
      'limits', // PURCHASE_LIMIT_EXCEEDED's caps
      'onHand',
      'products', // INSUFFICIENT_STOCK's and PRODUCT_UNAVAILABLE's products
      'requestId',
      'reserved',
      'status',
      'title',
      'type',
    ]);
    const code = problem?.properties?.code;
    const ref = code?.$ref ?? code?.allOf?.[0]?.$ref ?? '';
    const codes =
      doc.components.schemas[ref.replace('#/components/schemas/', '')]?.enum ?? code?.enum;
    expect(codes?.slice().sort()).toEqual(Object.keys(ERROR_STATUS).sort());
    const fieldError = doc.components.schemas.FieldError;
    expect(Object.keys(fieldError?.properties ?? {}).sort()).toEqual(['field', 'message']);
  });

  it('types the payment, categories, health and webhook responses', () => {
    const ok = (id: string, status: string) =>
      byId.get(id)?.op.responses[status]?.content?.['application/json']?.schema?.$ref;
    const props = (ref: string | undefined) =>
      Object.keys(
        doc.components.schemas[(ref ?? '').replace('#/components/schemas/', '')]?.properties ?? {},
      ).sort();
    expect(props(ok('startPayment', '201'))).toEqual([
      'amount',
      'clientSecret',
      'paymentIntentId',
      'status',
    ]);
    expect(props(ok('listCategories', '200'))).toEqual(['items']);
    expect(props(ok('getLiveness', '200'))).toEqual(['status']);
    expect(props(ok('getReadiness', '200'))).toEqual(['details', 'status']);
    expect(props(ok('receiveStripeEvent', '200'))).toEqual(['duplicate', 'received']);
  });

  it('uses integers for money and quantities, date-time for times, uuid for ids and path ids', () => {
    const INTEGER =
      /^(amount|quantity|availableQuantity|initialStock|delta|onHand|reserved|available|count|rating|sizeBytes|expiresIn|limit)$/;
    const TIME = /(At|^at)$/;
    const ID = /^(id|productId|orderId|categoryId|imageId)$/;
    const wrong: string[] = [];
    for (const [name, schema] of Object.entries(doc.components.schemas)) {
      for (const [prop, s] of Object.entries(schema.properties ?? {})) {
        if (s.$ref || s.allOf) continue; // an object (Money, Rating): checked as its own schema
        if (INTEGER.test(prop) && s.type !== 'integer')
          wrong.push(`${name}.${prop}: ${s.type} (integer)`);
        if (TIME.test(prop) && s.format !== 'date-time')
          wrong.push(`${name}.${prop}: ${s.format} (date-time)`);
        if (ID.test(prop) && s.format !== 'uuid') wrong.push(`${name}.${prop}: ${s.format} (uuid)`);
        // a string format on anything but a string (`string | null` reflects as Object): a
        // generated client types the field as an object
        if (s.format && s.type !== 'string' && s.type !== 'integer' && s.type !== 'number')
          wrong.push(`${name}.${prop}: ${s.type} with format ${s.format} (string)`);
      }
    }
    for (const { where, op } of operations) {
      for (const p of op.parameters ?? []) {
        if (p.in === 'path' && p.schema?.format !== 'uuid') wrong.push(`${where} path ${p.name}`);
        if (p.in === 'query' && p.name === 'limit' && p.schema?.type !== 'integer')
          wrong.push(`${where} query limit`);
      }
    }
    expect(wrong).toEqual([]);
  });

  it('declares each header once per operation, and Idempotency-Key as required where API.md requires it', () => {
    for (const { where, op } of operations) {
      const headers = (op.parameters ?? [])
        .filter((p) => p.in === 'header')
        .map((p) => p.name.toLowerCase());
      expect({ where, headers }).toEqual({ where, headers: [...new Set(headers)] });
    }
    const required = operations
      .filter(({ op }) => op.parameters?.some((p) => p.name === 'Idempotency-Key' && p.required))
      .map(({ op }) => op.operationId)
      .sort();
    expect(required).toEqual(['cancelOrder', 'createOrder', 'refundOrder', 'startPayment']);
  });

  it('gives every JSON request body an example (on the schema or on its properties)', () => {
    const missing: string[] = [];
    for (const { where, op } of operations) {
      const ref = op.requestBody?.content['application/json']?.schema?.$ref;
      if (!ref) continue;
      const schema = doc.components.schemas[ref.replace('#/components/schemas/', '')];
      const hasExample = (s: Schema | undefined): boolean =>
        s !== undefined &&
        ('example' in s ||
          Object.values(s.properties ?? {}).some(
            (p) =>
              'example' in p ||
              hasExample(
                p.$ref
                  ? doc.components.schemas[p.$ref.replace('#/components/schemas/', '')]
                  : p.items?.$ref
                    ? doc.components.schemas[p.items.$ref.replace('#/components/schemas/', '')]
                    : undefined,
              ),
          ));
      if (!hasExample(schema)) missing.push(where);
    }
    expect(missing).toEqual([]);
  });

  it("does not require the bodies API.md lets a client leave out, and declares the provider's refusal where it can happen", () => {
    // POST /v1/orders without a body checks out the cart; a refund without one refunds the rest
    for (const id of ['createOrder', 'refundOrder'])
      expect([id, byId.get(id)?.op.requestBody?.required]).toEqual([id, false]);
    for (const id of ['startPayment', 'refundOrder'])
      expect([id, Object.keys(byId.get(id)!.op.responses)]).toEqual([
        id,
        expect.arrayContaining(['502']),
      ]);
  });

  it('declares X-Request-Id on every answer, WWW-Authenticate on every 401, and the RateLimit headers on every answer of a throttled route — its refusals too, which carry them, but for the server’s own refusals before any guard (API.md)', () => {
    const missing: string[] = [];
    for (const { where, op } of operations) {
      const throttled = Object.values(op.responses).some((r) => r.headers?.['RateLimit']);
      for (const [status, response] of Object.entries(op.responses)) {
        if (!response.headers?.['X-Request-Id']) missing.push(`${where} ${status} X-Request-Id`);
        if (status === '401' && !response.headers?.['WWW-Authenticate'])
          missing.push(`${where} 401 WWW-Authenticate`);
        // (not on the server's own refusals, given before any guard ran)
        const beforeGuards = ['408', '413', '414', '415', '417', '431'].includes(status);
        const declared = !!(
          response.headers?.['RateLimit'] && response.headers?.['RateLimit-Policy']
        );
        if ((status === '429' || (throttled && !beforeGuards)) && !declared)
          missing.push(`${where} ${status} RateLimit`);
        if (beforeGuards && declared) missing.push(`${where} ${status} RateLimit (never sent)`);
      }
    }
    expect(missing).toEqual([]);
  });

  it('leaves the development-only routes out', () => {
    expect(Object.keys(doc.paths).filter((p) => p.startsWith('/v1/dev'))).toEqual([]);
  });
});
