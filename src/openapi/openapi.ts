import { NotFoundException, type INestApplication } from '@nestjs/common';
import { METHOD_METADATA, PATH_METADATA } from '@nestjs/common/constants';
import { ModulesContainer } from '@nestjs/core';
import { DocumentBuilder, OpenAPIObject, SwaggerModule } from '@nestjs/swagger';
import type {
  HeaderObject,
  OperationObject,
  ParameterObject,
  ReferenceObject,
  SchemaObject,
} from '@nestjs/swagger/dist/interfaces/open-api-spec.interface';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { gzipSync } from 'node:zlib';
import { appendListHeader } from '../common/http/list-header';
import { sendProblem } from '../common/errors/problem-details.filter';
import { unknownQueryParameters } from '../common/http/validation';
import { WELL_FORMED_REQUEST_ID } from '../common/http/request-id';
import { THROTTLER_SKIP } from '@nestjs/throttler/dist/throttler.constants';
import { REQUIRED_PERMISSIONS } from '../auth/require-permission.decorator';
import {
  IDEMPOTENCY_IGNORED,
  IDEMPOTENCY_REQUIRED,
  IGNORED_KEY_DESCRIPTION,
} from '../idempotency/idempotency.decorator';
import {
  DEFAULT_PROBLEM,
  ProblemDto,
  ProblemStatus,
  problemResponse,
} from '../common/http/api-problems';
import { BEARER_SCHEME, STORAGE_TOKEN_SCHEME } from './security-schemes';
import { IS_PUBLIC } from '../common/http/public.decorator';

const TAGS: Array<[string, string]> = [
  ['auth', 'Registration, sign-in, token refresh and the signed-in account'],
  ['catalog', 'Products, categories, reviews and recommendations (reads are public)'],
  ['cart', "The signed-in customer's cart"],
  ['orders', 'Orders with stock reservations: create, list, read, cancel'],
  ['payments', 'Starting a payment for an order (the client completes it with the provider SDK)'],
  ['admin', 'Catalog, stock, order and refund administration (permission-checked)'],
  ['webhooks', 'Signed notifications from the payment provider and the object store'],
  ['operations', 'Liveness and readiness probes'],
];

const API_EXCLUDE_CONTROLLER = 'swagger/apiExcludeController';

/** What the guards and interceptors will do with a route, read from the same metadata they read. */
interface RouteContract {
  isPublic: boolean;
  permissions: boolean;
  throttled: boolean;
  idempotency: 'required' | 'optional' | 'ignored' | 'none';
}

// eslint-disable-next-line @typescript-eslint/no-unsafe-function-type
const meta = <T>(key: string, ...targets: Function[]): T | undefined => {
  for (const target of targets) {
    const value: unknown = Reflect.getMetadata(key, target);
    if (value !== undefined) return value as T;
  }
  return undefined;
};

/**
 * The operationId of a route without an explicit one (`Controller_method`, never readable
 * camelCase, so it cannot collide with an explicit id). The committed document has none.
 */
const fallbackOperationId = (controllerKey: string, methodKey: string): string =>
  `${controllerKey}_${methodKey}`;
const READABLE_ID = /^[a-z][A-Za-z0-9]*$/;

/** operationId → contract, for every route of every controller the document describes. */
function routeContracts(app: INestApplication): Map<string, RouteContract | 'ambiguous'> {
  const contracts = new Map<string, RouteContract | 'ambiguous'>();
  for (const module of app.get(ModulesContainer).values()) {
    for (const wrapper of module.controllers.values()) {
      const controller = wrapper.metatype;
      if (typeof controller !== 'function' || meta(API_EXCLUDE_CONTROLLER, controller)) continue;
      const prototype = controller.prototype as Record<string, unknown>;
      for (const name of Object.getOwnPropertyNames(prototype)) {
        const handler = prototype[name];
        if (typeof handler !== 'function' || meta(PATH_METADATA, handler) === undefined) continue;
        const operationId =
          meta<{ operationId?: string }>('swagger/apiOperation', handler)?.operationId ??
          fallbackOperationId(controller.name, name);
        const isPost = meta<number>(METHOD_METADATA, handler) === 1; // RequestMethod.POST
        if (contracts.has(operationId)) {
          contracts.set(operationId, 'ambiguous');
          continue;
        }
        contracts.set(operationId, {
          isPublic: meta<boolean>(IS_PUBLIC, handler, controller) === true,
          permissions: (meta<string[]>(REQUIRED_PERMISSIONS, handler, controller) ?? []).length > 0,
          throttled: meta<boolean>(`${THROTTLER_SKIP}default`, handler, controller) !== true,
          idempotency: !isPost
            ? 'none'
            : meta<boolean>(IDEMPOTENCY_IGNORED, handler, controller)
              ? 'ignored'
              : meta<boolean>(IDEMPOTENCY_REQUIRED, handler)
                ? 'required'
                : 'optional',
        });
      }
    }
  }
  return contracts;
}

const SUCCESS: Record<string, string> = {
  '200': 'OK',
  '201': 'Created',
  '204': 'Done; no content',
};

const REPLAYED: HeaderObject = {
  description:
    'Present (`true`) when this is the stored answer to an earlier request with the same Idempotency-Key',
  schema: { type: 'string', enum: ['true'] },
};

/** On every answer (API.md): the id to quote, also the problem's `requestId`. */
const REQUEST_ID: HeaderObject = {
  description:
    "This request's id (sent as `X-Request-Id` by the client, or made here); a problem's `requestId`",
  schema: { type: 'string' },
};

/**
 * Sent by a client on any request (API.md: a well-formed one is kept, answered back and on every
 * log line of the request; anything else is replaced by a UUID, silently): declared, with the rule
 * the server applies (src/common/http/request-id.ts), so a generated client knows it (contract
 * review).
 */
const REQUEST_ID_PARAMETER: ParameterObject = {
  name: 'X-Request-Id',
  in: 'header',
  required: false,
  description:
    "A trace id of the caller, kept when 8..128 of `A-Z a-z 0-9 . _ : -` (otherwise replaced by one made here): answered back in `X-Request-Id` and the problem's `requestId`",
  schema: { type: 'string', pattern: WELL_FORMED_REQUEST_ID.source },
};

/** On every 401 (RFC 9110 15.5.2, RFC 6750 3): the scheme, and whether a token was refused. */
const CHALLENGE: HeaderObject = {
  description:
    '`Bearer`, or `Bearer error="invalid_token"` when a token was sent and refused (the queue board asks for `Basic`)',
  schema: { type: 'string' },
};

/** A header described once (`components.headers`) and referred to: one always sent where declared. */
const headerRef = (name: string): ReferenceObject => ({ $ref: `#/components/headers/${name}` });

/** On the answers of throttled routes, when the limits' store answered (draft-ietf-httpapi-ratelimit-headers). */
const RATE_LIMIT_HEADERS: Record<string, HeaderObject> = {
  'RateLimit-Policy': {
    description:
      'The limits counting this request: `"<name>";q=<quota>;w=<window seconds>`, one item per limit',
    schema: { type: 'string' },
  },
  RateLimit: {
    description: 'What is left of each: `"<name>";r=<remaining>;t=<seconds to reset>`',
    schema: { type: 'string' },
  },
};
/** Statuses only the server's own refusals answer, before any guard ran (no RateLimit headers). */
const BEFORE_GUARDS = new Set(['408', '413', '414', '415', '417', '431']);

/** `components.headers` of the document: what the references above name. */
const SHARED_HEADERS: Record<string, HeaderObject> = { WWWAuthenticate: CHALLENGE };

const isParameter = (p: ParameterObject | ReferenceObject): p is ParameterObject => 'in' in p;

/** The required Idempotency-Key's example: Swagger UI fills it in (swaggerRequestInterceptor). */
const IDEMPOTENCY_KEY_EXAMPLE = '3f0c9a52-6a1e-4d7e-9a57-0b7f2d1c8e41';

/** What parseIdempotencyKey accepts: printable ASCII, not only spaces. */
const PRINTABLE_ASCII_PATTERN = '^[\\x20-\\x7E]*[\\x21-\\x7E][\\x20-\\x7E]*$';

const IDEMPOTENCY_PARAMETER: Record<
  Exclude<RouteContract['idempotency'], 'none'>,
  ParameterObject
> = {
  required: {
    name: 'Idempotency-Key',
    in: 'header',
    required: true,
    description:
      '1..255 printable ASCII characters, in one header line, unique per intended effect: a retry with the same key and body replays the first response (`Idempotent-Replayed: true`) for 24 h',
    schema: {
      type: 'string',
      minLength: 1,
      maxLength: 255,
      pattern: PRINTABLE_ASCII_PATTERN,
      example: IDEMPOTENCY_KEY_EXAMPLE,
    },
  },
  optional: {
    name: 'Idempotency-Key',
    in: 'header',
    required: false,
    description:
      'Optional: when sent, a retry with the same key and body replays the first response for 24 h',
    schema: { type: 'string', minLength: 1, maxLength: 255, pattern: PRINTABLE_ASCII_PATTERN },
  },
  ignored: {
    name: 'Idempotency-Key',
    in: 'header',
    required: false,
    description: IGNORED_KEY_DESCRIPTION,
    schema: { type: 'string', maxLength: 255 },
  },
};

/**
 * Completes one operation from its route contract: its security (bearer unless @Public(), whose
 * own @ApiSecurity stays),
 * the Idempotency-Key header (declared once, whatever the decorators said), and the problem
 * responses every such route can give.
 */
function applyContract(
  operation: OperationObject,
  contract: RouteContract,
  request: { takesBody: boolean; hasPathParameters: boolean },
): void {
  // a public route's own scheme (@ApiSecurity: the object store's token) stays; else none
  operation.security = contract.isPublic ? (operation.security ?? []) : [{ [BEARER_SCHEME]: [] }];

  // each header once (HTTP names are case-insensitive): the declared one (@ApiHeader, with a
  // description) wins over the one Nest reflects from @Headers('name')
  const headers = new Map<string, ParameterObject>();
  for (const p of operation.parameters ?? []) {
    if (!isParameter(p) || p.in !== 'header') continue;
    const name = p.name.toLowerCase();
    if (!headers.has(name) || (p.description && !headers.get(name)?.description))
      headers.set(name, p);
  }
  const parameters = (operation.parameters ?? []).filter(
    (p) =>
      !isParameter(p) ||
      p.in !== 'header' ||
      (headers.get(p.name.toLowerCase()) === p &&
        p.name.toLowerCase() !== 'idempotency-key' &&
        p.name.toLowerCase() !== 'x-request-id'),
  );
  if (contract.idempotency !== 'none') parameters.push(IDEMPOTENCY_PARAMETER[contract.idempotency]);
  parameters.push(REQUEST_ID_PARAMETER);
  operation.parameters = parameters;

  // 503: a dependency (the database breaker, the password-hashing gate) is down, or the
  // process is shutting down
  // 408, 417 and 431: the HTTP server's own refusals, of any request that arrives too slowly,
  // expects what it cannot meet or has too much head, before any route (a generated client's
  // status union must hold them)
  const problems: Array<[ProblemStatus]> = [[400], [408], [417], [431], [500], [503]];
  if (!contract.isPublic) problems.push([401]);
  if (contract.permissions) problems.push([403]);
  if (contract.throttled) problems.push([429]);
  if (contract.idempotency === 'optional' || contract.idempotency === 'required')
    problems.push([422]);
  // the framework's own refusals (API.md): of a body, before any route code; of a path parameter
  if (request.takesBody) problems.push([413], [415]);
  if (request.hasPathParameters) problems.push([414]);
  for (const [status] of problems) operation.responses[status] ??= problemResponse(status);

  // the idempotency problems, after what the route itself documents at that status
  const also = (status: ProblemStatus, codes: string, retryAfter = false) => {
    const existing = operation.responses[status];
    const own =
      existing && 'description' in existing ? existing.description : DEFAULT_PROBLEM[status];
    operation.responses[status] = problemResponse(status, `${own}; or ${codes}`, retryAfter);
  };
  if (contract.idempotency === 'required') {
    also(400, '`IDEMPOTENCY_KEY_MISSING` or `IDEMPOTENCY_KEY_INVALID`');
  }
  if (contract.idempotency === 'optional') also(400, '`IDEMPOTENCY_KEY_INVALID`');
  if (contract.idempotency === 'required' || contract.idempotency === 'optional') {
    also(
      409,
      '`IDEMPOTENCY_KEY_IN_USE`: the first request with this key is still running; retry after `Retry-After` seconds',
      true,
    );
  }
  for (const [status, response] of Object.entries(operation.responses)) {
    if (!status.startsWith('2') || !response || !('description' in response)) continue;
    if (!response.description) response.description = SUCCESS[status] ?? 'Success';
    if (contract.idempotency === 'required' || contract.idempotency === 'optional') {
      response.headers = { ...response.headers, 'Idempotent-Replayed': REPLAYED };
    }
  }
  for (const [status, response] of Object.entries(operation.responses)) {
    if (!response || !('description' in response)) continue;
    response.headers = { ...response.headers, 'X-Request-Id': REQUEST_ID };
    // the limits' guards set them before the handler runs: its refusals carry them too — not
    // the answers the server gives before any guard (a body or headers it cannot read); inline,
    // so a generated client takes them as optional (absent while the limits' store is away, or
    // with the limits off), where a referenced header is typed as always sent
    if (contract.throttled && !BEFORE_GUARDS.has(status))
      response.headers = { ...response.headers, ...RATE_LIMIT_HEADERS };
    if (status === '401')
      response.headers = { ...response.headers, 'WWW-Authenticate': headerRef('WWWAuthenticate') };
  }
  // stable order: 2xx, then problems by status
  operation.responses = Object.fromEntries(
    Object.entries(operation.responses).sort(([a], [b]) => a.localeCompare(b)),
  );
}

const METHODS = ['get', 'put', 'post', 'delete', 'patch'] as const;

/**
 * The OpenAPI document: the contract clients generate from (committed as openapi.json,
 * linted by Redocly and Spectral in `npm test`). `strict` (how openapi.json is written)
 * refuses an operation without a summary, a description or a unique operationId; otherwise
 * (Swagger UI, where tests may add probe controllers) such an operation is left as it is.
 */
export function buildOpenApiDocument(
  app: INestApplication,
  options: { strict?: boolean } = {},
): OpenAPIObject {
  const builder = new DocumentBuilder()
    .setTitle('Shop orders API')
    .setDescription(
      'Catalog, cart, orders with stock reservations, payments and webhooks. Errors are ' +
        'RFC 9457 `application/problem+json` (the `Problem` schema) with a stable `code`. ' +
        'Money is integer minor units with an ISO 4217 currency; ids are UUIDs; times are ' +
        'ISO 8601 UTC.',
    )
    .setVersion('1.0.0')
    .setContact('Shop engineering', 'https://shop.example', 'engineering@shop.example')
    .setLicense('Proprietary', 'https://shop.example/terms')
    .addServer('/', 'This instance (same origin as the document)')
    .addBearerAuth(
      {
        type: 'http',
        scheme: 'bearer',
        bearerFormat: 'JWT',
        description: 'The `accessToken` from register, login or refresh',
      },
      BEARER_SCHEME,
    )
    .addBearerAuth(
      {
        type: 'http',
        scheme: 'bearer',
        description:
          "The object store's webhook target only (`POST /v1/webhooks/storage`): `STORAGE_WEBHOOK_TOKEN`",
        bearerFormat: 'opaque token',
      },
      STORAGE_TOKEN_SCHEME,
    );
  for (const [name, description] of TAGS) builder.addTag(name, description);
  const document = SwaggerModule.createDocument(app, builder.build(), {
    operationIdFactory: fallbackOperationId,
    extraModels: [ProblemDto],
  });
  document.components = {
    ...document.components,
    headers: { ...document.components?.headers, ...SHARED_HEADERS },
  };

  const contracts = routeContracts(app);
  const seen = new Set<string>();
  for (const [path, item] of Object.entries(document.paths)) {
    for (const method of METHODS) {
      const operation = item[method];
      if (!operation) continue;
      const where = `${method.toUpperCase()} ${path}`;
      const id = operation.operationId;
      const contract = id === undefined ? undefined : contracts.get(id);
      const complete = Boolean(operation.summary && operation.description);
      if (
        !id ||
        !contract ||
        contract === 'ambiguous' ||
        seen.has(id) ||
        !complete ||
        !READABLE_ID.test(id)
      ) {
        if (options.strict) {
          throw new Error(
            `OpenAPI: ${where} needs @ApiOperation({operationId (unique, camelCase), summary, description})`,
          );
        }
        continue;
      }
      seen.add(id);
      applyContract(operation, contract, {
        takesBody: !['get', 'head', 'options'].includes(method),
        hasPathParameters: path.includes('{'),
      });
      if (!path.startsWith(WEBHOOKS_PATH)) closeRequestSchema(document, operation);
    }
  }
  return document;
}

/** The webhooks' bodies are their senders' formats, which carry more than the shop reads. */
const WEBHOOKS_PATH = '/v1/webhooks/';

/**
 * A request body's schema, and every schema it refers to, say `additionalProperties: false`:
 * the validation pipe refuses a property no DTO declares (400, `forbidNonWhitelisted`), and a
 * client generated from a document that allowed them sent them (a login with `remember`, an
 * object round-tripped with fields of its own) and met a 400 the document said could not happen.
 */
function closeRequestSchema(document: OpenAPIObject, operation: OperationObject): void {
  const body = operation.requestBody;
  const schema = body && 'content' in body ? body.content['application/json']?.schema : undefined;
  const components = document.components?.schemas ?? {};
  const seen = new Set<string>();
  const visit = (node: unknown): void => {
    if (!node || typeof node !== 'object') return;
    if (Array.isArray(node)) return node.forEach(visit);
    const ref = (node as { $ref?: unknown }).$ref;
    if (typeof ref === 'string') {
      const name = ref.split('/').pop() ?? '';
      if (seen.has(name)) return;
      seen.add(name);
      const target = components[name] as SchemaObject | undefined;
      if (target?.type === 'object' && target.additionalProperties === undefined)
        target.additionalProperties = false;
      return visit(target);
    }
    for (const child of Object.values(node)) visit(child);
  };
  visit(schema);
}

/**
 * Swagger UI at /docs and the document at /docs-json (API.md), public and outside the Nest
 * guards (counted against the client's request limits by `count`, as the guard would count
 * them): each answer is built once, never per request. The JSON is built and
 * serialized on the first request for it and kept — @nestjs/swagger's own route would stringify
 * ~300 KB per request, and its `/docs-yaml` dump it as YAML each time (not in API.md: not
 * served) — and the UI loads it from /docs-json rather than carrying its own copy in its init
 * script: the process keeps that one string, not the document's object graph as well, and a
 * process nobody asks for the document never builds it (memory: issue 14's 200 MiB per process;
 * building it at boot raised an API process's resident peak by ~3 MiB).
 */
/**
 * The files under /docs/ the UI's page loads (@nestjs/swagger's template): the rest of
 * swagger-ui-dist (its package.json with the version, source maps, the stock petstore page and
 * initializer) is not served.
 */
export const UI_FILES: ReadonlySet<string> = new Set([
  'swagger-ui.css',
  'swagger-ui-bundle.js',
  'swagger-ui-standalone-preset.js',
  'swagger-ui-init.js',
  'favicon-32x32.png',
  'favicon-16x16.png',
]);

/**
 * Swagger UI's request interceptor, run in the admin's browser on every Execute: an
 * Idempotency-Key left at the document's example (which "Try it out" fills in) or blank is
 * replaced by one derived from this visit and the request. The example was sent as is by every
 * user on every visit: a second refund of an order replayed the first (201, nothing refunded), and
 * any other order's refund was refused 422 for a day (browser review). A fresh random key on each
 * Execute then made a retry — after a timeout, a "Failed to fetch", a double click — a second
 * refund. So the key is a nonce drawn once per page load plus a hash of the method, URL and body
 * (its JSON re-serialized, so whitespace does not count): the same request again in one visit
 * sends the same key and replays (`Idempotent-Replayed: true`), another order, amount or body is
 * another key, and a reload is new keys (deliberately the same refund twice: reload, or type a
 * key). Keys are scoped per user on the server, so the signed-in user is not hashed. A key the
 * admin typed is sent as typed. The hash is two 32-bit FNV-1a (forwards and backwards, plain
 * ES5): it only tells requests of one visit apart, nothing is secret. Built from source text with
 * `new Function` — its `toString()` is what @nestjs/swagger writes into the page's init script —
 * so no build step (coverage counters, a compiler's helpers) can put server-side names in it;
 * `crypto.getRandomValues` works on plain http too, where `crypto.randomUUID` and
 * `crypto.subtle` do not.
 */
// eslint-disable-next-line @typescript-eslint/no-implied-eval -- a constant source, run in the browser
const swaggerRequestInterceptor = new Function(
  'request',
  `var headers = request.headers || {};
  var hex = function (bytes) {
    return Array.prototype.map.call(bytes, function (v) { return (v + 256).toString(16).slice(1); }).join('');
  };
  var fnv1a = function (text, backwards) {
    var h = backwards ? 0x050c5d1f : 0x811c9dc5;
    for (var i = 0; i < text.length; i++) {
      h ^= text.charCodeAt(backwards ? text.length - 1 - i : i);
      h += (h << 1) + (h << 4) + (h << 7) + (h << 8) + (h << 24);
    }
    return ((h >>> 0) + 0x100000000).toString(16).slice(1);
  };
  for (var name in headers) {
    if (name.toLowerCase() !== 'idempotency-key') continue;
    var value = String(headers[name]).trim();
    if (value !== '' && value !== ${JSON.stringify(IDEMPOTENCY_KEY_EXAMPLE)}) continue;
    if (!window.__idempotencyKeyNonce)
      window.__idempotencyKeyNonce = hex(crypto.getRandomValues(new Uint8Array(16)));
    var body = request.body == null ? '' : request.body;
    if (typeof body === 'string') {
      try { body = JSON.stringify(JSON.parse(body)); } catch (e) {}
    } else {
      try { body = JSON.stringify(body); } catch (e) { body = String(body); }
    }
    var text = String(request.method).toUpperCase() + ' ' + request.url + '\\n' + body;
    headers[name] = window.__idempotencyKeyNonce + '-' + fnv1a(text, false) + fnv1a(text, true);
  }
  return request;`,
);

/**
 * `persistAuthorization`: the token pasted into the Authorize dialog survives reloads and browser
 * restarts (localStorage) — in development only: on a shop's shared counter computer, the next
 * person to open /docs was the admin until the token expired.
 */
export function mountOpenApi(
  app: INestApplication,
  opts: {
    persistAuthorization: boolean;
    /**
     * Counts each request for the page, its files and the document against the client's request
     * limits (`countOutsideNest`), throwing their refusal: they are mounted on
     * Fastify, outside the Nest guards — the document is ~290 KB, the UI's bundle 1.5 MB.
     */
    count?: (request: FastifyRequest, reply: FastifyReply) => Promise<void>;
  },
): void {
  let json: string | undefined;
  const fastify = (
    app.getHttpAdapter() as unknown as { getInstance(): FastifyInstance }
  ).getInstance();
  const judge = (request: FastifyRequest, reply: FastifyReply, done: () => void) => {
    // anything else under /docs/ is a 404, as sent: `%70ackage.json`, `package%2ejson` are the
    // static files' package.json once decoded, `//swagger-ui.css` and `%00` no file of the page
    const file = /^\/docs\/([^?]*)/.exec(request.url)?.[1];
    if (file !== undefined && file !== '' && !UI_FILES.has(file)) {
      sendProblem(new NotFoundException(), request, reply);
      return;
    }
    // unknown query parameters are a 400 on every route (API.md), these too: they are mounted on
    // Fastify, outside the Nest guard that refuses them elsewhere (UnreadInputGuard)
    const query = request.query as Record<string, unknown> | undefined;
    if (!query || Object.keys(query).length === 0) return done();
    sendProblem(unknownQueryParameters(Object.keys(query)), request, reply);
  };
  fastify.addHook('onRequest', (request, reply, done) => {
    const route = request.routeOptions.url;
    if (route === undefined || !/^\/docs(-json|\/|$)/.test(route)) return done();
    if (!opts.count) return judge(request, reply, done);
    opts.count(request, reply).then(
      () => judge(request, reply, done),
      (err: unknown) => void sendProblem(err, request, reply),
    );
  });
  // an empty document: the UI's init script then embeds no spec and fetches `swaggerUrl` (which
  // also wins over a `?url=` in the page's address, so the page shows only this API)
  SwaggerModule.setup('docs', app, {} as OpenAPIObject, {
    raw: false,
    swaggerUrl: '/docs-json',
    swaggerOptions: {
      persistAuthorization: opts.persistAuthorization,
      // no badge from validator.swagger.io: the page's CSP refuses it (a violation on every load
      // under any host name but localhost), and it would send the document's address there
      validatorUrl: null,
      requestInterceptor: swaggerRequestInterceptor,
    },
  });
  // gzip-compressed for a client that takes it (~290 KB as JSON, ~17 KB compressed: each pull cost
  // the whole document in bandwidth), compressed once, on the first request that asks for it
  let gzipped: Buffer | undefined;
  app.getHttpAdapter().get('/docs-json', (request: FastifyRequest, reply: FastifyReply) => {
    json ??= JSON.stringify(buildOpenApiDocument(app));
    void reply.type('application/json; charset=utf-8');
    appendListHeader(reply, 'Vary', 'Accept-Encoding');
    if (!acceptsGzip(request.headers['accept-encoding'])) return reply.send(json);
    gzipped ??= gzipSync(json);
    return reply.header('Content-Encoding', 'gzip').send(gzipped);
  });
}

/** Whether an Accept-Encoding takes gzip (RFC 9110 12.5.3): named, or `*`, with a q above 0. */
function acceptsGzip(header: string | undefined): boolean {
  if (!header) return false;
  let gzip: number | undefined;
  let any: number | undefined;
  for (const item of header.split(',')) {
    const [coding, ...parameters] = item.split(';');
    const name = coding.trim().toLowerCase();
    let q = 1;
    for (const parameter of parameters) {
      const weight = /^\s*q\s*=\s*([\d.]+)\s*$/i.exec(parameter);
      if (weight) q = Number(weight[1]);
    }
    if (name === 'gzip' || name === 'x-gzip') gzip = q;
    else if (name === '*') any = q;
  }
  return (gzip ?? any ?? 0) > 0;
}
