/**
 * `Authorization: Bearer <token>`: the scheme in any case (RFC 9110 §11.1: a relay may write
 * `bearer`), one or more spaces (RFC 6750 §2.1 and RFC 9110 §11.4: `1*SP`), then the token, one
 * word. Node has already trimmed the value's leading and trailing whitespace.
 */
const BEARER = /^Bearer +([^\s]+)$/i;

/**
 * The token of an `Authorization: Bearer <token>` header; null when absent or malformed. The one
 * reading of the header (the access-token guard, the sold-out fast path, the queue board, the
 * object store's webhook, the 401 challenge): a token one of them takes, every other takes too.
 */
export function bearerToken(header: unknown): string | null {
  const match = typeof header === 'string' ? BEARER.exec(header) : null;
  return match ? match[1] : null;
}
