const NUL = '\u0000';
/** A surrogate without its pair (JSON.stringify escapes only those, as `\udXXX`). */
const LONE_SURROGATE_ESCAPE = /\\ud[89a-f][0-9a-f]{2}/i;
/** A high surrogate not followed by a low one, or a low one not preceded by a high one. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/**
 * `s` as PostgreSQL's text and `jsonb` can hold it: every NUL (text refuses it, 22021; jsonb its
 * `\u0000` escape, 22P05) and every lone surrogate (invalid UTF-16: jsonb refuses its escape,
 * 22P02) replaced by U+FFFD, the replacement character. `s` itself when it holds neither.
 */
export function textStorable(s: string): string {
  const cleaned = s.includes(NUL) ? s.replaceAll(NUL, '\uFFFD') : s;
  return cleaned.replace(LONE_SURROGATE, '\uFFFD');
}

/**
 * A JSON value PostgreSQL's `jsonb` can store: text typed by someone else (a billing name in a
 * provider's event) may carry a NUL or a lone surrogate, which `jsonb` refuses — each becomes
 * U+FFFD in every string and property name (textStorable); the rest is unchanged. Returns `value`
 * itself when it holds neither (the common case costs one serialization, no copy).
 */
export function jsonbStorable<T>(value: T): T {
  const text = JSON.stringify(value);
  if (!text.includes('\\u0000') && !LONE_SURROGATE_ESCAPE.test(text)) return value;
  return JSON.parse(text, (_key: string, v: unknown) => {
    if (typeof v === 'object' && v !== null && !Array.isArray(v)) {
      const entries = Object.entries(v as Record<string, unknown>);
      if (entries.some(([k]) => textStorable(k) !== k))
        return Object.fromEntries(entries.map(([k, x]) => [textStorable(k), x]));
    }
    return typeof v === 'string' ? textStorable(v) : v;
  }) as T;
}
