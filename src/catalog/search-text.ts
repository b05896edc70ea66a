import { ValidateBy, ValidationOptions, buildMessage } from 'class-validator';
import { charLength } from '../common/http/char-length';

/**
 * The search text as `websearch_to_tsquery` is given it: NFKC (the form the search vector holds,
 * migration 1763800028000-SearchNormalized — PostgreSQL normalizes it again, to no effect), with
 * every long run of negations — more than RUN_KEPT `-` signs with nothing but punctuation or
 * spaces between them — made one (an odd run) or none (an even one: a double negation is no
 * negation), as PostgreSQL reads them. websearch_to_tsquery refuses no syntax, but it stacks each
 * negation, and ~32 in a row overflow its parser's stack ("tsquery stack too small", XX000):
 * `?q=` and 33 hyphens — a pasted separator line, fullwidth dashes from an input method —
 * answered 500. Shorter runs stay as typed (`tea -green`, `tea -- green`, `foo--bar`).
 */
export function searchText(q: string): string {
  return q.normalize('NFKC').replace(/-(?:[^\p{L}\p{N}\p{M}"'_]*-)+/gu, (run) => {
    const negations = run.split('-').length - 1;
    if (negations <= RUN_KEPT) return run;
    return negations % 2 === 1 ? '-' : ' ';
  });
}

/** Negations in a row kept as typed: far below the ~32 that overflow the parser. */
const RUN_KEPT = 8;

/**
 * Search text whose NFKC form (what is searched: searchText) is at most `max` characters. The
 * length the client sent is checked too (@CharLength), but NFKC may make one character many —
 * U+FDFA eighteen —: 200 of them made a query of 1,900 characters and ~800 terms, where the
 * bound meant at most ~200. Ordinary text stays within twice its length (a ligature is two letters).
 */
export function SearchTextWithin(max: number, options?: ValidationOptions): PropertyDecorator {
  return ValidateBy(
    {
      name: 'searchTextWithin',
      constraints: [max],
      validator: {
        validate: (value: unknown) =>
          typeof value === 'string' && charLength(value.normalize('NFKC')) <= max,
        defaultMessage: buildMessage(
          (each) =>
            `${each}$property must be at most $constraint1 characters long in its NFKC form (some characters stand for several)`,
          options,
        ),
      },
    },
    options,
  );
}
