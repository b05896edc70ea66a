import { createHash } from 'node:crypto';

/**
 * The epoch of a password newly set with this hash (users.password_epoch): 22 base64url
 * characters. Made from the hash it was set with — the same tag the marks of own clients held
 * before the column existed, so migration 1763800041000 computes it for old rows in SQL — and
 * never recomputed when the same password is hashed anew (a rehash keeps the epoch).
 */
export function passwordEpochOf(passwordHash: string): string {
  return createHash('sha256')
    .update(`signin-credential\0${passwordHash}`)
    .digest('base64url')
    .slice(0, 22);
}

/**
 * passwordEpochOf in SQL, of the text expression `hash` (migration 1763800041000's backfill and
 * trigger; a schema test holds the two to the same answers).
 */
export const epochOfHashSql = (hash: string): string =>
  `left(translate(encode(sha256(convert_to('signin-credential', 'UTF8') || decode('00', 'hex') || convert_to(${hash}, 'UTF8')), 'base64'), '+/', '-_'), 22)`;

/**
 * The transaction-local setting a rehash sets before it writes (UserRepository#setPasswordHash):
 * the trigger of migration 1763800041000 then keeps the epoch; any other write of a new hash that
 * leaves the epoch as it was (an older build's, an operator's UPDATE) gets a new one.
 */
export const REHASH_SETTING = 'shop.password_rehash';

/**
 * The transaction-local setting with which a writer of a new password says it ends the account's
 * sessions and forgets its clients itself (AccountService#changePassword, #ensureAccount: with the
 * revocation marks that stop their access tokens at once, keeping the client the owner changed it
 * from). Any other write of a new password — an operator's `UPDATE users SET password_hash = …`,
 * the only way to reset a customer's — has them ended by the trigger `users_password_set`
 * (migration 1763800047000-NewPasswordEndsSessions).
 */
export const NEW_PASSWORD_SETTING = 'shop.password_set_revokes';
