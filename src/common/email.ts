/**
 * Emails are compared and stored trimmed, lower-cased and in Unicode NFC (the users table checks
 * all three): `josé@…` typed as é or as e + a combining accent is one address, one account.
 */
export function normalizeEmail(email: string): string {
  return email.trim().toLowerCase().normalize('NFC');
}

/** Providers that ignore dots in the local part (and their alias domain). */
const DOTLESS_DOMAINS = new Map([
  ['gmail.com', 'gmail.com'],
  ['googlemail.com', 'gmail.com'],
]);

/**
 * The inbox an address delivers to, as far as the common providers say: a `+tag` dropped, and the
 * dots of a Gmail local part (`a.b+x@googlemail.com` → `ab@gmail.com`). For allowances per inbox,
 * so that sub-addresses of one inbox count as one; never for sending or sign-in.
 */
export function inboxKey(email: string): string {
  const normalized = normalizeEmail(email);
  const at = normalized.lastIndexOf('@');
  if (at <= 0) return normalized;
  let local = normalized.slice(0, at).split('+')[0];
  let domain = normalized.slice(at + 1);
  const dotless = DOTLESS_DOMAINS.get(domain);
  if (dotless) {
    local = local.replaceAll('.', '');
    domain = dotless;
  }
  return `${local}@${domain}`;
}
