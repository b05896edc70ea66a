import { domainToUnicode } from 'node:url';

/**
 * Emails are compared and stored trimmed, lower-cased and in Unicode NFC (the users table checks
 * all three): `josé@…` typed as é or as e + a combining accent is one address, one account.
 */
export function normalizeEmail(email: string): string {
  return email.trim().toLowerCase().normalize('NFC');
}

/**
 * An address as people have them: no quoted local part, backslash or white space (RFC 5321
 * allows `"\\victim"@x` and `" victim"@x`; mail software delivers them to `victim@x`, so each
 * would be another account, and another inbox to the per-inbox allowances, for one mailbox) —
 * and no invisible characters (format or default-ignorable: `asha\u200B@x`, `as\u00ADha@x` show
 * as `asha@x` and would be accounts of their own beside it).
 */
export const PLAIN_ADDRESS =
  /^[^\s"\\\p{Cf}\p{Default_Ignorable_Code_Point}]+@[^\s"\\@\p{Cf}\p{Default_Ignorable_Code_Point}]+$/u;

/**
 * A domain written in its own letters, not its ASCII (`xn--`) form: `asha@xn--bcher-kva.de` is
 * delivered to `asha@bücher.de` (mail software sends the Unicode form as that), so it would be a
 * second account, and a second inbox to the allowances, for one mailbox. (hasCanonicalDomain
 * refuses these too, and every other form IDNA maps — this one names the usual case.)
 */
export const UNICODE_DOMAIN = /^[^@]+@(?!(?:[^.@]+\.)*xn--)[^@]+$/iu;

/**
 * Whether the address's domain — as stored (normalizeEmail) — is written as IDNA maps it
 * (`domainToUnicode` gives it back unchanged, once normalized too): mail software sends `ﬁsh.com`
 * as `fish.com`, `ⓔxample.com` as `example.com`, `ⅳ.example.com` as `iv.example.com` and
 * `example。com` (an ideographic or fullwidth full stop) as `example.com` (UTS #46 mapping) — each would be a second account, and a
 * second inbox to the allowances, for one mailbox. A domain that is none (empty) is not one.
 */
export function hasCanonicalDomain(email: string): boolean {
  const at = email.lastIndexOf('@');
  const domain = email.slice(at + 1);
  // (compared as stored: normalizeEmail lower-cases what IDNA maps to capitals, as in Cherokee)
  return at > 0 && domain !== '' && normalizeEmail(domainToUnicode(domain)) === domain;
}

/**
 * Providers whose one mailbox answers to several domains (the mailbox's name on each), and the
 * characters their local parts ignore: Gmail ignores dots (googlemail.com is gmail.com); Proton
 * ignores dots, hyphens and underscores, on any of its four domains; iCloud's me.com and mac.com
 * are the icloud.com mailbox of the same name.
 */
const PROVIDERS = new Map<string, { domain: string; ignored?: RegExp }>([
  ['gmail.com', { domain: 'gmail.com', ignored: /\./g }],
  ['googlemail.com', { domain: 'gmail.com', ignored: /\./g }],
  ...['proton.me', 'protonmail.com', 'protonmail.ch', 'pm.me'].map(
    (d) => [d, { domain: 'proton.me', ignored: /[._-]/g }] as const,
  ),
  ...['icloud.com', 'me.com', 'mac.com'].map((d) => [d, { domain: 'icloud.com' }] as const),
]);
/** Fastmail's subdomain addressing: `anything@name.fastmail.com` is delivered to `name@fastmail.com`. */
const FASTMAIL_SUBDOMAIN = /^([^.]+)\.fastmail\.com$/;

/**
 * The inbox an address delivers to, as far as the common providers say: a `+tag` dropped, and
 * what a provider ignores or folds (PROVIDERS: `a.b+x@googlemail.com` → `ab@gmail.com`,
 * `first_last@pm.me` → `firstlast@proton.me`, `x@name.fastmail.com` → `name@fastmail.com`). For allowances per inbox,
 * so that sub-addresses of one inbox count as one; never for sending or sign-in.
 */
export function inboxKey(email: string): string {
  const normalized = normalizeEmail(email);
  const at = normalized.lastIndexOf('@');
  if (at <= 0) return normalized;
  // quoting and escapes as delivered (`"\\vi ctim"` → `victim`), for rows stored before PLAIN_ADDRESS
  let local = normalized
    .slice(0, at)
    .replace(/["\\\s]/gu, '')
    .split('+')[0];
  // rows stored before UNICODE_DOMAIN: an `xn--` domain is the inbox of its Unicode form
  let domain = domainToUnicode(normalized.slice(at + 1)) || normalized.slice(at + 1);
  const subdomain = FASTMAIL_SUBDOMAIN.exec(domain);
  if (subdomain) [local, domain] = [subdomain[1], 'fastmail.com'];
  const provider = PROVIDERS.get(domain);
  if (provider) {
    if (provider.ignored) local = local.replace(provider.ignored, '');
    domain = provider.domain;
  }
  return `${local}@${domain}`;
}
