/**
 * The search text as `websearch_to_tsquery` is given it: NFKC (the form the search vector holds,
 * migration 1763800028000-SearchNormalized — PostgreSQL normalizes it again, to no effect), with
 * every run of negations — `-` signs with nothing but punctuation or spaces between them — made
 * one. websearch_to_tsquery refuses no syntax, but it stacks each negation, and ~32 in a row
 * overflow its parser's stack ("tsquery stack too small", XX000): `?q=` and 33 hyphens — a pasted
 * separator line, fullwidth dashes from an input method — answered 500. A single `-` keeps its
 * meaning wherever it stands (`tea -green`, `tea - green`, `tea -(green)` exclude green); only
 * `- - green`, a double negation, now excludes it too.
 */
export function searchText(q: string): string {
  return q.normalize('NFKC').replace(/-(?:[^\p{L}\p{N}\p{M}"'_]*-)+/gu, '-');
}
