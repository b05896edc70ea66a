import { escapeLiteral } from 'pg';

/** An element of a PostgreSQL array literal: NULL, a number, or a double-quoted string. */
function arrayElement(v: unknown): string {
  if (v === null || v === undefined) return 'NULL';
  if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  if (typeof v === 'bigint') return v.toString();
  if (typeof v === 'string') return `"${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
  throw new Error(`cannot inline an array element of type ${typeof v}`);
}

function literal(value: unknown): string {
  if (value === null || value === undefined) return 'NULL';
  // parenthesized: a negative number after a minus sign would otherwise start a comment (--)
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new Error(`cannot inline ${value}`);
    return `(${value})`;
  }
  if (typeof value === 'bigint') return `(${value.toString()})`;
  if (typeof value === 'boolean') return value ? 'TRUE' : 'FALSE';
  if (value instanceof Date) return escapeLiteral(value.toISOString());
  if (typeof value === 'string') return escapeLiteral(value);
  if (Array.isArray(value)) return escapeLiteral(`{${value.map(arrayElement).join(',')}}`);
  throw new Error(`cannot inline a ${typeof value}`);
}

/**
 * Replaces `$1…$n` in `sql` with SQL literals of `params`, for the one statement that travels
 * together with COMMIT in a single simple-protocol message (which takes no parameters).
 * Strings go through the driver's `escapeLiteral`; arrays become array literals (elements
 * double-quoted and escaped, then the whole escaped again as a string). The SQL must cast each
 * placeholder (`$1::uuid[]`, `$2::timestamptz`), since literals arrive untyped.
 */
export function inlineParams(sql: string, params: unknown[]): string {
  return sql.replace(/\$(\d+)/g, (_m, n: string) => {
    const i = Number(n) - 1;
    if (i < 0 || i >= params.length) throw new Error(`no parameter $${n}`);
    return literal(params[i]);
  });
}
