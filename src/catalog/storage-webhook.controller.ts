import { Controller, HttpCode, Post, Req, UseGuards } from '@nestjs/common';
import type { RawBodyRequest } from '@nestjs/common';
import { ApiBody, ApiNoContentResponse, ApiOperation, ApiSecurity, ApiTags } from '@nestjs/swagger';
import type { FastifyRequest } from 'fastify';
import { ApiProblems } from '../common/http/api-problems';
import { STORAGE_TOKEN_SCHEME } from '../openapi/security-schemes';
import { Public } from '../common/http/public.decorator';
import { RateLimit } from '../common/throttling/rate-limit.decorator';
import { HonourIdempotencyKeyOutsideTransaction } from '../idempotency/idempotency.decorator';
import { ImagesService } from './images.service';
import { StorageTokenGuard } from './storage-token.guard';

/**
 * Object-storage upload notifications: S3 event notifications (`Records[].s3.object.key`) from
 * the store's webhook target, authenticated with `Authorization: Bearer <STORAGE_WEBHOOK_TOKEN>`.
 */
@ApiTags('webhooks')
@Public()
@Controller('v1/webhooks')
export class StorageWebhookController {
  constructor(private readonly images: ImagesService) {}

  @Post('storage')
  @HttpCode(204)
  @ApiOperation({
    operationId: 'receiveStorageNotification',
    summary: 'Object-store upload notification',
    description:
      'Called by the S3-compatible object store (an S3/MinIO event notification, `Records[].s3.object.key`) ' +
      'when an upload completes. Authenticated with `Authorization: Bearer <STORAGE_WEBHOOK_TOKEN>` before ' +
      'the body is read; each record is confirmed with HeadObject (declared size and type) before its image ' +
      'is marked ready. Records that are not ours are acknowledged and ignored.',
  })
  // the credential as a security scheme: OpenAPI ignores a header parameter named Authorization
  // (Swagger UI sends none, generators leave it out), which made the route read as anonymous
  @ApiSecurity(STORAGE_TOKEN_SCHEME)
  @ApiBody({
    required: true,
    description:
      'An S3 event notification: `{Records: [{eventName, s3: {bucket: {name}, object: {key}}}]}`',
    schema: {
      type: 'object',
      additionalProperties: true,
      properties: {
        Records: {
          type: 'array',
          minItems: 1,
          maxItems: 100,
          items: {
            type: 'object',
            additionalProperties: true,
            required: ['eventName', 's3'],
            properties: {
              eventName: { type: 'string', maxLength: 100 },
              s3: {
                type: 'object',
                additionalProperties: true,
                required: ['bucket', 'object'],
                properties: {
                  bucket: {
                    type: 'object',
                    additionalProperties: true,
                    required: ['name'],
                    properties: { name: { type: 'string', maxLength: 255 } },
                  },
                  object: {
                    type: 'object',
                    additionalProperties: true,
                    required: ['key'],
                    properties: { key: { type: 'string', minLength: 1, maxLength: 3072 } },
                  },
                },
              },
            },
          },
        },
      },
      required: ['Records'],
    },
  })
  @ApiNoContentResponse({ description: 'Recorded (or not ours, and ignored)' })
  @ApiProblems(
    [
      400,
      '`WEBHOOK_SIGNATURE_INVALID` (missing or wrong token) or `BAD_REQUEST` (not an S3 event notification)',
    ],
    [503, '`SERVICE_UNAVAILABLE`: the store could not be asked; it retries later'],
  )
  @RateLimit('webhook')
  @UseGuards(StorageTokenGuard)
  // a key, when sent, is honoured without a transaction around the handler: it calls the store
  // (HeadObject), and no network call runs inside a transaction; confirming is safe to repeat
  @HonourIdempotencyKeyOutsideTransaction()
  uploaded(@Req() req: RawBodyRequest<FastifyRequest>): Promise<void> {
    return this.images.uploaded(req.rawBody);
  }
}
