const NUL = '\u0000';

/** `value` with every NUL in its strings and property names replaced by U+FFFD. */
const clean = (s: string): string => (s.includes(NUL) ? s.replaceAll(NUL, '\uFFFD') : s);

/**
 * A JSON value PostgreSQL's `jsonb` can store: it refuses the `\u0000` escape (SQLSTATE 22P05),
 * which text typed by someone else (a billing name in a provider's event) may carry. Every NUL in
 * a string or a property name becomes U+FFFD, the replacement character; the rest is unchanged.
 * Returns `value` itself when it holds no NUL (the common case costs one serialization, no copy).
 */
export function jsonbStorable<T>(value: T): T {
  const text = JSON.stringify(value);
  if (!text.includes('\\u0000')) return value;
  return JSON.parse(text, (_key: string, v: unknown) => {
    if (typeof v === 'object' && v !== null && !Array.isArray(v)) {
      const entries = Object.entries(v as Record<string, unknown>);
      if (entries.some(([k]) => k.includes(NUL)))
        return Object.fromEntries(entries.map(([k, x]) => [clean(k), x]));
    }
    return typeof v === 'string' ? clean(v) : v;
  }) as T;
}
