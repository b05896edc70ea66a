/** The longest path a log line keeps (the rest is counted, not written). */
const PATH_LIMIT = 256;
/** Query parameters a log line keeps the value of — what pages and filters, never what a person typed. */
const SHOWN_PARAMETERS = new Set(['limit', 'cursor', 'categoryId', 'sort', 'status']);
/**
 * … of which these by their first FINGERPRINT_LENGTH characters: a listing cursor is sealed and
 * hundreds of characters long, and its start (the seal's nonce, one per page) names its page.
 */
const FINGERPRINTED = new Set(['cursor']);
const FINGERPRINT_LENGTH = 16;
/** The longest value of a shown parameter kept; at most this many parameters are named. */
const VALUE_LIMIT = 64;
const PARAMETER_LIMIT = 16;

/**
 * A request target as log lines write it: anyone chooses it, and it was logged whole — a 16 KB
 * URL of quotes made a 32 KB line for every request, 404s included (6 MB a second from one
 * client; lines past 16 KB are split by Docker's json-file driver and most shippers), and its
 * query values as sent (search text a person typed, a token a client put there). The path is
 * kept up to PATH_LIMIT characters, with how many more there were; the query by its parameters'
 * names, and the values only of SHOWN_PARAMETERS, up to VALUE_LIMIT characters each (a cursor
 * by its fingerprint).
 */
export function loggedUrl(url: string | undefined): string | undefined {
  if (url === undefined) return undefined;
  const at = url.indexOf('?');
  const path = at < 0 ? url : url.slice(0, at);
  const shortPath =
    path.length > PATH_LIMIT
      ? `${path.slice(0, PATH_LIMIT)}…(${path.length - PATH_LIMIT} more)`
      : path;
  if (at < 0) return shortPath;
  const query = url.slice(at + 1);
  const parts = query.split('&').filter((p) => p !== '');
  const named = parts.slice(0, PARAMETER_LIMIT).map((part) => {
    const eq = part.indexOf('=');
    const rawName = eq < 0 ? part : part.slice(0, eq);
    const rawValue = eq < 0 ? '' : part.slice(eq + 1);
    const name = safeDecode(rawName);
    const shownName = name.length > VALUE_LIMIT ? `${name.slice(0, VALUE_LIMIT)}…` : name;
    if (!SHOWN_PARAMETERS.has(name)) return `${encodeURIComponent(shownName)}=…`;
    const value = safeDecode(rawValue);
    if (FINGERPRINTED.has(name) && value.length > FINGERPRINT_LENGTH)
      return `${name}=${encodeURIComponent(value.slice(0, FINGERPRINT_LENGTH))}…`;
    return value.length > VALUE_LIMIT ? `${name}=…` : `${name}=${encodeURIComponent(value)}`;
  });
  if (parts.length > PARAMETER_LIMIT) named.push(`…(${parts.length - PARAMETER_LIMIT} more)`);
  return `${shortPath}?${named.join('&')}`;
}

function safeDecode(part: string): string {
  try {
    return decodeURIComponent(part.replace(/\+/g, ' '));
  } catch {
    return part;
  }
}
