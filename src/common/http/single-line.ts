import { ValidateBy, ValidationOptions, buildMessage } from 'class-validator';

/**
 * What a name must not hold: line and paragraph breaks (CR, LF, NEL, U+2028/2029), TAB, and the
 * bidirectional controls (U+202A–U+202E, U+2066–U+2069). A name is shown on one line — in an
 * email's greeting, an order line, a page — and one with breaks or reordering controls could pose
 * as text of its own there (a customer naming themselves "…\n\nYour payment failed. Pay at …").
 */
const NOT_ONE_LINE = /[\t\n\r\u0085\u2028\u2029\u202A-\u202E\u2066-\u2069]/;

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

/** `value` on one line: what SingleLine refuses becomes a space (for names stored before it existed). */
export function oneLine(value: string): string {
  return value.replace(new RegExp(NOT_ONE_LINE.source, 'g'), ' ');
}
