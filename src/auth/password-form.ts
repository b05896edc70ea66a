import { ValidateBy, ValidationOptions, buildMessage } from 'class-validator';
import { charLength } from '../common/http/char-length';

/**
 * The form a password is hashed and verified in: Unicode NFKC (NIST SP 800-63B §5.1.1.2), so the
 * same password typed on two keyboards — precomposed `ở` on one, `o` + combining marks on another,
 * full-width digits from an IME — is the same password.
 */
export const normalizePassword = (password: string): string => password.normalize('NFKC');

/** Whether `password` has `min`..`max` characters both as typed and as hashed (PasswordLength). */
export function passwordFits(password: string, min: number, max: number): boolean {
  const fits = (s: string) => charLength(s) >= min && charLength(s) <= max;
  return fits(password) && fits(normalizePassword(password));
}

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
