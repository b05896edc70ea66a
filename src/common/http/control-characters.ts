/**
 * Control characters refused in every string input: C0 controls except TAB, LF and CR (free
 * text such as a review or a description may span lines), and DEL. NUL in particular can never
 * be stored: PostgreSQL refuses it in text (SQLSTATE 22021), so it must be a 400 at the edge.
 */
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F]/;

/**
 * A UTF-16 surrogate without its other half (`"\ud83c"` in JSON): no character at all, which
 * PostgreSQL's driver stores as U+FFFD — what was answered would differ from what was written,
 * two different SKUs would collide, two different passwords would verify alike. Refused with the
 * control characters.
 */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

export function hasControlCharacters(value: string): boolean {
  return CONTROL.test(value) || LONE_SURROGATE.test(value);
}

/** The longest property name or path an error message repeats (the rest is cut, marked `…`). */
const SHOWN_NAME_LIMIT = 64;

/**
 * A name the client sent (a property, a query parameter, a path to one), as an error answer
 * repeats it: its control characters and lone surrogates as U+FFFD (an answer must not carry the
 * very input it refuses — a strict JSON decoder rejects a lone surrogate), and at most
 * SHOWN_NAME_LIMIT characters (a 120,000-character name was answered twice over).
 */
export function shownName(name: string): string {
  const clean = name
    .replace(new RegExp(CONTROL.source, 'g'), '\uFFFD')
    .replace(new RegExp(LONE_SURROGATE.source, 'g'), '\uFFFD');
  if (clean.length <= SHOWN_NAME_LIMIT) return clean;
  // (not between the halves of a pair)
  const end = /[\uD800-\uDBFF]/.test(clean[SHOWN_NAME_LIMIT - 1])
    ? SHOWN_NAME_LIMIT - 1
    : SHOWN_NAME_LIMIT;
  return `${clean.slice(0, end)}…`;
}

/**
 * Property names refused in every body and query: the prototype-pollution names and every other
 * name Object.prototype holds (`toString`, `valueOf`, `hasOwnProperty`, …), which class-transformer
 * skips (a function of that name already sits on the DTO) and the validation pipe therefore
 * drops without a word (an unknown field must be a 400, and a dropped one would let
 * `?toString=<random>` bust the catalog cache). No DTO field bears any of these names.
 */
const REFUSED_KEYS: ReadonlySet<string> = new Set([
  ...Object.getOwnPropertyNames(Object.prototype),
  'prototype',
]);

/** The first refused input inside a value: where it is (`items.0.comment`, `` for the value itself) and why. */
export interface RefusedInput {
  path: string;
  reason: 'control-characters' | 'reserved-name';
}

/**
 * The first string inside `value` (property names included) that holds a control character, or
 * the first property with a refused name (REFUSED_KEYS); null when there is none.
 * Walks objects and arrays iteratively (no recursion, so no depth can overflow the stack).
 */
export function findRefusedInput(value: unknown): RefusedInput | null {
  const stack: [unknown, string][] = [[value, '']];
  while (stack.length > 0) {
    const [current, path] = stack.pop()!;
    if (typeof current === 'string') {
      if (hasControlCharacters(current)) return { path, reason: 'control-characters' };
    } else if (typeof current === 'object' && current !== null) {
      for (const key of Object.keys(current)) {
        const childPath = path ? `${path}.${key}` : key;
        if (hasControlCharacters(key)) return { path: childPath, reason: 'control-characters' };
        if (REFUSED_KEYS.has(key)) return { path: childPath, reason: 'reserved-name' };
        stack.push([(current as Record<string, unknown>)[key], childPath]);
      }
    }
  }
  return null;
}
