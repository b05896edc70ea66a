/**
 * The search text as `websearch_to_tsquery` is given it: NFKC (the form the search vector holds,
 * migration 1763800028000-SearchNormalized — PostgreSQL normalizes it again, to no effect), with
 * every `-` that negates nothing made a space. websearch_to_tsquery never refuses a syntax, but a
 * run of ~32 negations with no word to negate overflows its parser's stack ("tsquery stack too
 * small", XX000): `?q=` and 33 hyphens — a pasted separator line, fullwidth dashes from an input
 * method — answered 500. A `-` before a word (a letter, digit, combining mark, quote or
 * underscore) still excludes it, as the user meant; one before anything else meant nothing.
 */
export function searchText(q: string): string {
  return q.normalize('NFKC').replace(/-(?![\p{L}\p{N}\p{M}"'_])/gu, ' ');
}
