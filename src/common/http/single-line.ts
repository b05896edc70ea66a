import { ValidateBy, ValidationOptions, buildMessage } from 'class-validator';

/** The bidirectional embedding, override and isolate controls (U+202A–U+202E, U+2066–U+2069). */
const DIRECTION_RANGES = '\\u202A-\\u202E\\u2066-\\u2069';
const DIRECTION_CONTROLS = new RegExp(`[${DIRECTION_RANGES}]`);

/**
 * What a name must not hold: line and paragraph breaks (CR, LF, NEL, U+2028/2029), TAB, and the
 * bidirectional controls. A name is shown on one line — on an order, a review, a page — and one
 * with breaks or reordering controls could pose as text of its own there (a customer naming
 * themselves "…\n\nYour payment failed. Pay at …").
 */
const NOT_ONE_LINE = new RegExp(`[\\t\\n\\r\\u0085\\u2028\\u2029${DIRECTION_RANGES}]`);

/** Refuses a string that is not a single line of plain text (see NOT_ONE_LINE). */
export function SingleLine(options?: ValidationOptions): PropertyDecorator {
  return ValidateBy(
    {
      name: 'singleLine',
      validator: {
        validate: (value: unknown) => typeof value === 'string' && !NOT_ONE_LINE.test(value),
        defaultMessage: buildMessage(
          (each) =>
            `${each}$property must be a single line, without line breaks, tabs or direction controls`,
          options,
        ),
      },
    },
    options,
  );
}

/** `text` without bidirectional controls (for text stored before they were refused). */
export function withoutDirectionControls(text: string): string {
  return text.replace(new RegExp(DIRECTION_CONTROLS.source, 'g'), '');
}

/**
 * Refuses the bidirectional controls in text shown to other people (a review): with them,
 * `\u202Emoc.elpmaxe-live//:sptth` shows as a link to another site, and one left open reorders
 * whatever a client shows after it. Line breaks stay allowed.
 */
export function NoDirectionControls(options?: ValidationOptions): PropertyDecorator {
  return ValidateBy(
    {
      name: 'noDirectionControls',
      validator: {
        validate: (value: unknown) => typeof value === 'string' && !DIRECTION_CONTROLS.test(value),
        defaultMessage: buildMessage(
          (each) => `${each}$property must not contain text-direction controls`,
          options,
        ),
      },
    },
    options,
  );
}

/**
 * The most combining marks one character may carry in text shown to other people: Vietnamese,
 * Indic and Thai text carries up to three or four, a keycap emoji two. More is a "tower" of
 * stacked accents that one character draws over the lines above and below it, defacing the page
 * it is shown on (`e` with 3,999 accents, a review the cart review posted).
 */
const MAX_STACKED_MARKS = 6;
const STACKED_MARKS = new RegExp(`\\p{M}{${MAX_STACKED_MARKS + 1}}`, 'u');

/** Refuses text with more than MAX_STACKED_MARKS combining marks in a row. */
export function NoStackedMarks(options?: ValidationOptions): PropertyDecorator {
  return ValidateBy(
    {
      name: 'noStackedMarks',
      validator: {
        validate: (value: unknown) => typeof value === 'string' && !STACKED_MARKS.test(value),
        defaultMessage: buildMessage(
          (each) =>
            `${each}$property must not stack more than ${MAX_STACKED_MARKS} combining marks on one character`,
          options,
        ),
      },
    },
    options,
  );
}

/** Characters that are letters or symbols by category yet show nothing (Hangul fillers, the braille blank). */
const BLANK_LETTERS = /[\u115F\u1160\u3164\uFFA0\u2800]/gu;
/** One of them (a test with no `g`: no lastIndex carried from one value to the next). */
const BLANK_LETTER = new RegExp(BLANK_LETTERS.source, 'u');
/**
 * Invisible format characters — zero-width space, word joiner, soft hyphen, BOM, tags, … — but
 * for ZWNJ and ZWJ, which Indic and Persian names (and emoji sequences) need (and ALLOWED_FORMAT).
 * (LRM, RLM and ALM are dropped before: see withoutDirectionMarks.)
 */
const HIDDEN_FORMAT = /(?!\u200C|\u200D)\p{Cf}/u;
/**
 * What is allowed of the rest, before HIDDEN_FORMAT looks: a subdivision flag in its shape (🏴, a
 * region's two tag letters and one to four tag letters or digits, CANCEL TAG — England, Scotland,
 * Wales), not any run of tags (which would carry invisible ASCII); the Mongolian vowel separator
 * between two Mongolian letters only.
 */
const ALLOWED_FORMAT = [
  /\u{1F3F4}[\u{E0061}-\u{E007A}]{2}[\u{E0030}-\u{E0039}\u{E0061}-\u{E007A}]{1,4}\u{E007F}/gu,
  /(?<=[\u1820-\u1878])\u180E(?=[\u1820-\u1878])/gu,
];

/**
 * `text` without the direction marks (LRM, RLM, ALM) that right-to-left keyboards insert and
 * nobody sees: dropped from a name rather than refused.
 */
export function withoutDirectionMarks(text: string): string {
  return text.replace(/[\u200E\u200F\u061C]/g, '');
}

/**
 * A name people can see and tell apart: at least one visible letter or digit, and no hidden
 * format characters (`Admin\u200B` beside `Admin`, a name of one Hangul filler shown as nothing).
 */
export function VisibleName(options?: ValidationOptions): PropertyDecorator {
  return ValidateBy(
    {
      name: 'visibleName',
      validator: {
        validate: (value: unknown) =>
          typeof value === 'string' &&
          !HIDDEN_FORMAT.test(
            ALLOWED_FORMAT.reduce((v, allowed) => v.replace(allowed, ''), value),
          ) &&
          /[\p{L}\p{N}]/u.test(value.replace(BLANK_LETTERS, '')),
        defaultMessage: buildMessage(
          (each) => `${each}$property must show a letter or digit, without invisible characters`,
          options,
        ),
      },
    },
    options,
  );
}

/**
 * A code people read and type (a SKU): in NFKC form (no full-width or ligature look-alikes of a
 * plain spelling), no blank at either end, and no control, format or other invisible character
 * (variation selectors, the combining grapheme joiner, Hangul fillers, the braille blank) — none
 * of them shows, so `TEA-250\u200B` or `TEA-250 ` would pass for `TEA-250` on an order or a label.
 */
export function PlainCode(options?: ValidationOptions): PropertyDecorator {
  return ValidateBy(
    {
      name: 'plainCode',
      validator: {
        validate: (value: unknown) =>
          typeof value === 'string' &&
          value === value.normalize('NFKC') &&
          value === value.trim() &&
          !/[\p{Cc}\p{Cf}\p{Default_Ignorable_Code_Point}]/u.test(value) &&
          !BLANK_LETTER.test(value),
        defaultMessage: buildMessage(
          (each) =>
            `${each}$property must be in Unicode NFKC form, without blanks at either end or invisible characters`,
          options,
        ),
      },
    },
    options,
  );
}

/** `value` on one line: what SingleLine refuses becomes a space (for names stored before it existed). */
export function oneLine(value: string): string {
  return value.replace(new RegExp(NOT_ONE_LINE.source, 'g'), ' ');
}
