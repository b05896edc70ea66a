import { applyDecorators } from '@nestjs/common';
import {
  ApiExtraModels,
  ApiParam,
  ApiProperty,
  ApiPropertyOptional,
  ApiResponse,
  ApiSchema,
  getSchemaPath,
} from '@nestjs/swagger';
import type {
  HeaderObject,
  ResponseObject,
} from '@nestjs/swagger/dist/interfaces/open-api-spec.interface';
import { ERROR_STATUS, ErrorCode } from '../errors/error-codes';

const ERROR_CODES = Object.keys(ERROR_STATUS) as ErrorCode[];

@ApiSchema({ name: 'FieldError', description: 'One invalid field of a VALIDATION_FAILED problem' })
export class FieldErrorDto {
  @ApiProperty({ description: 'Dotted path of the invalid field', example: 'items.0.quantity' })
  field!: string;

  @ApiProperty({ example: 'quantity must not be less than 1' })
  message!: string;
}

@ApiSchema({
  name: 'ProblemProduct',
  description: 'A product an INSUFFICIENT_STOCK or PRODUCT_UNAVAILABLE problem names',
})
export class ProblemProductDto {
  @ApiProperty({ format: 'uuid' })
  productId!: string;

  @ApiPropertyOptional({
    type: 'integer',
    description: 'Units asked for (INSUFFICIENT_STOCK)',
    example: 3,
  })
  requested?: number;

  @ApiPropertyOptional({
    type: 'integer',
    description:
      'Units available when refused (INSUFFICIENT_STOCK; absent when only known to be short)',
    example: 1,
  })
  available?: number;
}

@ApiSchema({
  name: 'PurchaseLimitBreach',
  description: 'A per-customer cap a PURCHASE_LIMIT_EXCEEDED order would pass',
})
export class PurchaseLimitBreachDto {
  @ApiProperty({ enum: ['openOrders', 'unitsPerProduct'] })
  cap!: 'openOrders' | 'unitsPerProduct';

  @ApiProperty({ type: 'integer', example: 5 })
  limit!: number;

  @ApiProperty({
    type: 'integer',
    description: 'What the customer would then hold against the cap',
    example: 6,
  })
  held!: number;

  @ApiPropertyOptional({ format: 'uuid', description: 'The product (unitsPerProduct)' })
  productId?: string;
}

const PROBLEM_DESCRIPTION =
  'RFC 9457 problem details, the body of every error (`application/problem+json`). Some codes ' +
  'add extension members: `products` on INSUFFICIENT_STOCK and PRODUCT_UNAVAILABLE, `limits` ' +
  'on PURCHASE_LIMIT_EXCEEDED, `onHand`, `reserved` and `delta` on STOCK_BELOW_RESERVED, ' +
  '`details` on SERVICE_UNAVAILABLE from the readiness probe.';

/** The `Problem` schema of the OpenAPI document. */
@ApiSchema({ name: 'Problem', description: PROBLEM_DESCRIPTION })
export class ProblemDto {
  @ApiProperty({ format: 'uri', example: 'https://shop.example/problems/insufficient-stock' })
  type!: string;

  @ApiProperty({ example: 'Conflict' })
  title!: string;

  @ApiProperty({ type: 'integer', minimum: 400, maximum: 599, example: 409 })
  status!: number;

  @ApiProperty({
    enum: ERROR_CODES,
    enumName: 'ErrorCode',
    description: 'Stable machine-readable code',
  })
  code!: ErrorCode;

  @ApiProperty({
    description: 'The X-Request-Id of the request; quote it when reporting a problem',
  })
  requestId!: string;

  @ApiProperty({ example: 'Not enough stock for some products.' })
  detail!: string;

  @ApiPropertyOptional({
    type: [FieldErrorDto],
    description: 'Every invalid field (VALIDATION_FAILED)',
  })
  errors?: FieldErrorDto[];

  @ApiPropertyOptional({
    type: [ProblemProductDto],
    description: 'The products short (INSUFFICIENT_STOCK) or not for sale (PRODUCT_UNAVAILABLE)',
  })
  products?: ProblemProductDto[];

  @ApiPropertyOptional({
    type: [PurchaseLimitBreachDto],
    description: 'The caps passed (PURCHASE_LIMIT_EXCEEDED)',
  })
  limits?: PurchaseLimitBreachDto[];

  @ApiPropertyOptional({
    type: 'integer',
    description: 'Units on hand when refused (STOCK_BELOW_RESERVED)',
    example: 12,
  })
  onHand?: number;

  @ApiPropertyOptional({
    type: 'integer',
    description: 'Units reserved when refused (STOCK_BELOW_RESERVED)',
    example: 12,
  })
  reserved?: number;

  @ApiPropertyOptional({
    type: 'integer',
    description: 'The adjustment refused (STOCK_BELOW_RESERVED)',
    example: -4,
  })
  delta?: number;

  @ApiPropertyOptional({
    type: 'object',
    description:
      "Each dependency and its status, with the database breaker's state (SERVICE_UNAVAILABLE from the readiness probe)",
    additionalProperties: {
      type: 'object',
      properties: {
        status: { type: 'string', example: 'down' },
        breaker: { type: 'string', example: 'open' },
      },
      required: ['status'],
    },
    example: { database: { status: 'up', breaker: 'closed' }, redis: { status: 'down' } },
  })
  details?: Record<string, { status: string; breaker?: string }>;
}

export type ProblemStatus =
  400 | 401 | 403 | 404 | 408 | 409 | 413 | 414 | 415 | 417 | 422 | 429 | 431 | 500 | 502 | 503;

const RETRY_AFTER: Record<string, HeaderObject> = {
  'Retry-After': {
    description: 'Seconds to wait before retrying',
    schema: { type: 'integer', minimum: 0 },
  },
};

/** What a status means when the route adds nothing more specific. */
export const DEFAULT_PROBLEM: Record<ProblemStatus, string> = {
  400: '`VALIDATION_FAILED` (with `errors[]`) or `BAD_REQUEST`: the request is malformed',
  401: '`UNAUTHENTICATED` or `TOKEN_INVALID`: no valid access token',
  403: '`FORBIDDEN`: the signed-in user lacks the permission',
  404: '`NOT_FOUND`: no such resource',
  408: '`REQUEST_TIMEOUT`: the request (its headers or its body) did not arrive in time',
  409: '`CONFLICT`: the request conflicts with the current state',
  413: '`PAYLOAD_TOO_LARGE`: the body is over the limit (128 KB; the webhooks 1 MB)',
  414: '`URI_TOO_LONG`: a path parameter is too long',
  415: '`UNSUPPORTED_MEDIA_TYPE`: a body that is not `application/json` in UTF-8',
  417: '`EXPECTATION_FAILED`: an `Expect` header other than `100-continue`',
  422: '`IDEMPOTENCY_KEY_REUSED`: the key was used with another body or route',
  429: '`RATE_LIMITED`: retry after `Retry-After` seconds',
  431: '`HEADERS_TOO_LARGE`: the request head is over the limit (16 KB, or 255 header lines)',
  500: '`INTERNAL_ERROR`: quote `requestId` when reporting it',
  502: '`PAYMENT_PROVIDER_REJECTED`',
  503: '`SERVICE_UNAVAILABLE`: a dependency is down; retry later',
};

/**
 * The problem+json response object for `status` (the same everywhere it is documented), with
 * `Retry-After` where the server sends it: 429, 503, and 409 IDEMPOTENCY_KEY_IN_USE.
 */
export function problemResponse(
  status: ProblemStatus,
  description = DEFAULT_PROBLEM[status],
  retryAfter = status === 429 || status === 503,
): ResponseObject {
  return {
    description,
    content: { 'application/problem+json': { schema: { $ref: getSchemaPath(ProblemDto) } } },
    ...(retryAfter ? { headers: RETRY_AFTER } : {}),
  };
}

/**
 * Documents a route's problem responses, each as `application/problem+json` with the Problem
 * schema: a status alone takes its default description, `[status, description]` names the
 * route's own codes. 400, 500, 401 (protected routes), 403 (permission routes), 429
 * (throttled routes) and the idempotency problems are added to every operation from the same
 * metadata the guards read (see buildOpenApiDocument).
 *
 *     @ApiProblems(404, [409, '`INSUFFICIENT_STOCK` or `PRODUCT_UNAVAILABLE`'])
 */
export function ApiProblems(...entries: Array<ProblemStatus | [ProblemStatus, string]>) {
  return applyDecorators(
    ApiExtraModels(ProblemDto),
    ...entries.map((entry) => {
      const [status, description] = Array.isArray(entry) ? entry : [entry, undefined];
      const { description: text, ...rest } = problemResponse(status, description);
      return ApiResponse({ status, description: text, ...rest });
    }),
  );
}

/** A `{name}` path parameter that is a UUID (validated by UuidParamPipe: anything else is a 400; lower-cased). */
export const ApiUuidParam = (name: string, description: string) =>
  ApiParam({ name, description, schema: { type: 'string', format: 'uuid' } });
