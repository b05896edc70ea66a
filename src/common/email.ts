/**
 * Emails are compared and stored trimmed, lower-cased and in Unicode NFC (the users table checks
 * all three): `josé@…` typed as é or as e + a combining accent is one address, one account.
 */
export function normalizeEmail(email: string): string {
  return email.trim().toLowerCase().normalize('NFC');
}
