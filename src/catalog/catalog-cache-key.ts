/**
 * The cache key of a catalog GET: its URL in one spelling. Keyed on the URL as sent, every
 * spelling of one listing the route accepts — parameters in another order, an empty segment
 * (`?limit=20&`), a percent-encoded name or value, an upper-case id — was an entry of its own,
 * so an anonymous client could make each request a miss that ran the listing's full query. Here:
 * the path lower-cased (ids are hex), the query's names and values decoded (`+` a space), empty
 * segments dropped, the pairs sorted, and encoded again. What the route refuses (400) is never
 * stored, so only spellings of an accepted query matter (a number has one: PageQueryDto's limit).
 */
export function catalogCacheKey(url: string): string {
  const target = routedTarget(url);
  const start = queryStart(target);
  // (ids are hex: their case does not matter; the rest of the path is matched case-sensitively)
  const path = canonicalPath(start === -1 ? target : target.slice(0, start)).toLowerCase();
  if (start === -1) return path;
  const pairs: [string, string][] = [];
  for (const segment of target.slice(start + 1).split('&')) {
    if (segment === '') continue;
    const eq = segment.indexOf('=');
    const name = decoded(eq === -1 ? segment : segment.slice(0, eq));
    const value = eq === -1 ? '' : decoded(segment.slice(eq + 1));
    pairs.push([name, value]);
  }
  if (pairs.length === 0) return path;
  pairs.sort(([a, x], [b, y]) => (a < b ? -1 : a > b ? 1 : x < y ? -1 : x > y ? 1 : 0));
  return `${path}?${pairs.map(([n, v]) => `${encodeURIComponent(n)}=${encodeURIComponent(v)}`).join('&')}`;
}

/**
 * The request target as the router (find-my-way) reads it: one not starting with `/` loses
 * everything up to the first `/` after `http://` or `https://` (`GET http://any.host/v1/products/…`
 * reaches the same route, and each made-up host was an entry of its own, pushing hot pages out of
 * the memory cache) — so a `?` or `#` inside that made-up host (`http://h?x/v1/products`) is gone
 * with it, as it is for the router, not the start of a query.
 */
function routedTarget(url: string): string {
  return url.charCodeAt(0) === 0x2f ? url : url.replace(/^https?:\/\/.*?\//, '/');
}

/**
 * Where the router's query string starts: after the first `?` or `#` (it answers
 * `/v1/products#limit=5` as `?limit=5`; a key split only at `?` made each such spelling an entry
 * of its own, and `#` part of the lower-cased path), from the second character on; -1 for none.
 */
function queryStart(target: string): number {
  for (let i = 1; i < target.length; i++) {
    const c = target.charCodeAt(i);
    if (c === 0x3f || c === 0x23) return i;
  }
  return -1;
}

/**
 * The path in one spelling: each segment percent-decoded and encoded again (`/v1/pr%6Fducts/…` is
 * `/v1/products/…`; an encoded `/` stays encoded).
 */
function canonicalPath(path: string): string {
  return path
    .split('/')
    .map((segment) => {
      try {
        return encodeURIComponent(decodeURIComponent(segment));
      } catch {
        return segment; // a stray `%`: the router refuses it (400), nothing is stored
      }
    })
    .join('/');
}

/**
 * A query component decoded as the query-string parser (fast-querystring) does: `+` a space,
 * then percent-decoded — or, when that fails (a stray `%`), left with its spaces but otherwise
 * as sent: `q=100%+cotton` is the route's `100% cotton`, not `100%+cotton` (`q=100%25%2Bcotton`).
 */
function decoded(component: string): string {
  const spaced = component.replace(/\+/g, ' ');
  try {
    return decodeURIComponent(spaced);
  } catch {
    return spaced;
  }
}
