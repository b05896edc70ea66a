/**
 * A string as a PostgreSQL string literal: byte for byte what pg's `escapeLiteral` gives (quotes
 * doubled; backslashes doubled and the literal then written ` E'…'`), without building it one
 * character at a time — a checkout inlines ~1,500 characters (its response body among them), and
 * each character appended made a string of its own for the garbage collector.
 */
export function quoteLiteral(s: string): string {
  const quoted = s.includes("'") ? s.replace(/'/g, "''") : s;
  return s.includes('\\') ? ` E'${quoted.replace(/\\/g, '\\\\')}'` : `'${quoted}'`;
}

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
  if (value instanceof Date) return quoteLiteral(value.toISOString());
  if (typeof value === 'string') return quoteLiteral(value);
  if (Array.isArray(value)) return quoteLiteral(`{${value.map(arrayElement).join(',')}}`);
  throw new Error(`cannot inline a ${typeof value}`);
}

/**
 * Replaces `$1…$n` in `sql` with SQL literals of `params`, for the one statement that travels
 * together with COMMIT in a single simple-protocol message (which takes no parameters).
 * Strings are quoted as the driver's `escapeLiteral` quotes them (`quoteLiteral`); arrays become array literals (elements
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
