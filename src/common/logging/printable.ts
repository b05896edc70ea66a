/** Anything but printable ASCII (space to `~`). */
const NOT_PRINTABLE = /[^\x20-\x7e]/g;

const escaped = (c: string) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;

/**
 * A value a client chose (a header's: Origin, an X-Forwarded-For address), as a log line may
 * carry it: quoted as a JSON string whose every character outside printable ASCII is a `\uXXXX`
 * escape. JSON escapes only C0 controls: the C1 controls that arrive in a header as Latin-1
 * bytes (0x9B CSI, which a terminal reading the log takes as an escape sequence; 0x85 NEL, a
 * line break to some readers), DEL, and any other character reached the log raw.
 */
export function quotedForLog(value: string): string {
  return JSON.stringify(value).replace(NOT_PRINTABLE, escaped);
}

/**
 * `value` as quotedForLog writes it, without the quotes: for a field of a line (an address;
 * undefined as it is — Fastify has no address for a client whose socket is gone).
 */
export function printableForLog<T extends string | undefined>(value: T): T {
  return (value === undefined ? value : quotedForLog(value).slice(1, -1)) as T;
}
