import { ValidateBy, ValidationOptions, buildMessage } from 'class-validator';
import { charLength } from '../common/http/char-length';

/**
 * The form a password is hashed and verified in: Unicode NFKC (NIST SP 800-63B §5.1.1.2), so the
 * same password typed on two keyboards — precomposed `ở` on one, `o` + combining marks on another,
 * full-width digits from an IME — is the same password.
 */
export const normalizePassword = (password: string): string => password.normalize('NFKC');

/**
 * A new password of `min`..`max` characters both as typed and in the form it is hashed in
 * (normalizePassword): `e` + a combining accent, four times, is 8 characters typed but the
 * 4-character password `éééé`.
 */
export function PasswordLength(
  min: number,
  max: number,
  options?: ValidationOptions,
): PropertyDecorator {
  const fits = (s: string) => charLength(s) >= min && charLength(s) <= max;
  return ValidateBy(
    {
      name: 'passwordLength',
      constraints: [min, max],
      validator: {
        validate: (value: unknown) =>
          typeof value === 'string' && fits(value) && fits(normalizePassword(value)),
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
