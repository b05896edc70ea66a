import { ValidateBy, ValidationOptions, buildMessage } from 'class-validator';
import { charLength } from '../common/http/char-length';

/**
 * The form a password is hashed and verified in: Unicode NFKC (NIST SP 800-63B §5.1.1.2), so the
 * same password typed on two keyboards — precomposed `ở` on one, `o` + combining marks on another,
 * full-width digits from an IME — is the same password.
 */
export const normalizePassword = (password: string): string => password.normalize('NFKC');

/**
 * How many characters a password of at most `max` may have as typed: a decomposing keyboard sends
 * a precomposed letter with its marks apart (`ở` as `o` + two combining marks), so the same
 * password is longer typed on it — a Vietnamese passphrase of 103 characters was 136 — and must
 * still be taken everywhere it is taken from a precomposing one. Bounded, so what is normalized
 * and hashed stays small.
 */
export const typedPasswordMax = (max: number): number => 4 * max;

/**
 * Whether `password` has `min`..`max` characters in the form it is hashed in (normalizePassword),
 * and at most typedPasswordMax(max) as typed (PasswordLength).
 */
export function passwordFits(password: string, min: number, max: number): boolean {
  if (charLength(password) > typedPasswordMax(max)) return false;
  const hashed = charLength(normalizePassword(password));
  return hashed >= min && hashed <= max;
}

/**
 * A password of `min`..`max` characters in the form it is hashed in (normalizePassword), however
 * it was typed: `e` + a combining accent, four times, is 8 characters typed but the 4-character
 * password `éééé`; `ở` typed as three code points is one character.
 */
export function PasswordLength(
  min: number,
  max: number,
  options?: ValidationOptions,
): PropertyDecorator {
  return ValidateBy(
    {
      name: 'passwordLength',
      constraints: [min, max],
      validator: {
        validate: (value: unknown) => typeof value === 'string' && passwordFits(value, min, max),
        defaultMessage: buildMessage(
          (each) =>
            `${each}$property must be between $constraint1 and $constraint2 characters long`,
          options,
        ),
      },
    },
    options,
  );
}
