/**
 * The transaction-local setting with which the purge of ended sessions (RefreshTokenRepository
 * #purgeEnded) says the families it deletes have ended: the trigger `refresh_family_deleted`
 * (migration 1763800044000-DeletedSessionsEnd) then records no tombstone for them. Any other
 * deletion of a family not revoked — the cascade of an operator's `DELETE FROM users` (an
 * erasure, a staff member off-boarded) — leaves one, which ends its access tokens within a poll.
 */
export const SESSION_PURGE_SETTING = 'shop.purging_ended_sessions';
