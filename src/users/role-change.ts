/**
 * The transaction-local setting with which a writer of `users.role` says it ends the account's
 * sessions itself (AccountService#ensureAccount: with the revocation marks that stop their access
 * tokens at once). Any other write of a new role — an operator's `UPDATE users SET role = …`, the
 * only way to lower one — has them ended by the trigger `users_role_changed` (migration
 * 1763800042000-RoleChangeEndsSessions): a session opened under the old role kept its rights until
 * its access token expired (15 min), its permissions read from the token's role claim.
 */
export const ROLE_CHANGE_SETTING = 'shop.role_change_revokes';
