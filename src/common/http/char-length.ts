import { ValidateBy, ValidationOptions, buildMessage } from 'class-validator';

/**
 * A string's length in characters as PostgreSQL counts them (`length()`, `varchar(n)`, the
 * CHECKs on text columns): Unicode code points. class-validator's @Length and @MaxLength
 * (validator's isLength) do not count variation selectors (U+FE0E, U+FE0F), so a name of 150
 * emoji-style letters passed @Length(1, 200) as 150 and reached a CHECK that counts 300.
 */
export function charLength(value: string): number {
  let n = 0;
  for (const _ of value) n++;
  return n;
}

/** A string of `min`..`max` characters, counted as the database counts them (charLength). */
export function CharLength(
  min: number,
  max: number,
  options?: ValidationOptions,
): PropertyDecorator {
  return ValidateBy(
    {
      name: 'charLength',
      constraints: [min, max],
      validator: {
        validate: (value: unknown) =>
          typeof value === 'string' && charLength(value) >= min && charLength(value) <= max,
        defaultMessage: buildMessage(
          (each) =>
            min > 0
              ? `${each}$property must be between $constraint1 and $constraint2 characters long`
              : `${each}$property must be at most $constraint2 characters long`,
          options,
        ),
      },
    },
    options,
  );
}

/** A string of at most `max` characters, counted as the database counts them (charLength). */
export const MaxChars = (max: number, options?: ValidationOptions): PropertyDecorator =>
  CharLength(0, max, options);
