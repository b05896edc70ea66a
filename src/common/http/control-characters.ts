/**
 * Control characters refused in every string input: C0 controls except TAB, LF and CR (free
 * text such as a review or a description may span lines), and DEL. NUL in particular can never
 * be stored: PostgreSQL refuses it in text (SQLSTATE 22021), so it must be a 400 at the edge.
 */
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F]/;

export function hasControlCharacters(value: string): boolean {
  return CONTROL.test(value);
}

/**
 * The path (`items.0.comment`, `` for the value itself) of the first string inside `value`
 * that holds a control character, or null. Walks objects and arrays iteratively (no recursion,
 * so no depth can overflow the stack); property names are checked too.
 */
export function findControlCharacters(value: unknown): string | null {
  const stack: [unknown, string][] = [[value, '']];
  while (stack.length > 0) {
    const [current, path] = stack.pop()!;
    if (typeof current === 'string') {
      if (hasControlCharacters(current)) return path;
    } else if (typeof current === 'object' && current !== null) {
      for (const [key, child] of Object.entries(current)) {
        const childPath = path ? `${path}.${key}` : key;
        if (hasControlCharacters(key)) return childPath;
        stack.push([child, childPath]);
      }
    }
  }
  return null;
}
