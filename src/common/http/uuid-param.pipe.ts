import { ArgumentMetadata, Injectable, ParseUUIDPipe } from '@nestjs/common';

/**
 * A UUID path parameter: Nest's ParseUUIDPipe (anything else is a 400), then lower-cased.
 * UUIDs are case-insensitive and PostgreSQL answers an upper-case one with the row's lower-case
 * id, so code comparing the two as strings took one resource for two: a refund asked for under
 * an upper-case order id was paid out, then answered 422 IDEMPOTENCY_KEY_REUSED (a fresh key
 * paid again); an image uploaded under an upper-case product id never became ready.
 */
@Injectable()
export class UuidParamPipe extends ParseUUIDPipe {
  override async transform(value: string, metadata: ArgumentMetadata): Promise<string> {
    return (await super.transform(value, metadata)).toLowerCase();
  }
}
