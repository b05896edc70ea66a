import type { ValueTransformer } from 'typeorm';
import { toSafeInt } from '../common/money/safe-int';

/**
 * `bigint` money (integer minor units) and counters: PostgreSQL hands bigint to node-postgres as
 * a string; entities expose an exact JS integer and refuse anything beyond 2^53 (as Vendure's
 * `@Money` column does). Use with `@Column('bigint', { transformer: BIGINT_NUMBER })`.
 */
export const BIGINT_NUMBER: ValueTransformer = {
  to: (value: number | null | undefined) => value,
  from: (value: string | number | null) => (value === null ? null : toSafeInt(value)),
};

/**
 * `char(3)` ISO 4217 currency codes: PostgreSQL pads `char(n)` with blanks; entities expose the
 * trimmed code. Use with `@Column('char', { length: 3, transformer: CURRENCY_CODE })`.
 */
export const CURRENCY_CODE: ValueTransformer = {
  to: (value: string | null | undefined) => value,
  from: (value: string | null) => (value === null ? null : value.trim()),
};
