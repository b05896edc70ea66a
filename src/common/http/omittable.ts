import { ValidateIf } from 'class-validator';

/**
 * A body field that may be left out, but not sent as `null`: unlike `@IsOptional()` (which skips
 * both), `null` goes on to the field's other validators and is a 400 naming it. `null` is not
 * "left out" — a buggy client's `"items": null` must not check out the cart, `"amount": null` must
 * not refund everything, `"active": null` must not reach a NOT NULL column.
 */
export const Omittable = (): PropertyDecorator => ValidateIf((_dto, value) => value !== undefined);
