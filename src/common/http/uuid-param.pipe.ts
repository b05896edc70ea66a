import { ArgumentMetadata, Injectable, ParseUUIDPipe } from '@nestjs/common';
import { DomainError } from '../errors/domain-error';

/**
 * A UUID path parameter: Nest's ParseUUIDPipe, then lower-cased; anything else is a 400
 * VALIDATION_FAILED naming the parameter, as every other invalid field (Nest's own answer came
 * out as BAD_REQUEST without `errors`, while a control character in the same parameter was a
 * VALIDATION_FAILED: one kind of error, two codes for clients to branch on).
 * UUIDs are case-insensitive and PostgreSQL answers an upper-case one with the row's lower-case
 * id, so code comparing the two as strings took one resource for two: a refund asked for under
 * an upper-case order id was paid out, then answered 422 IDEMPOTENCY_KEY_REUSED (a fresh key
 * paid again); an image uploaded under an upper-case product id never became ready.
 */
@Injectable()
export class UuidParamPipe extends ParseUUIDPipe {
  override async transform(value: string, metadata: ArgumentMetadata): Promise<string> {
    const uuid = await super.transform(value, metadata).catch(() => {
      const field = metadata.data ?? 'id';
      throw new DomainError('VALIDATION_FAILED', `The path parameter ${field} is not a UUID.`, {
        errors: [{ field, message: `${field} must be a UUID` }],
      });
    });
    return uuid.toLowerCase();
  }
}
