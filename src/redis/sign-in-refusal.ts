import type Redis from 'ioredis';

/**
 * Redis's replies refusing a client's credentials or what its user may run: a wrong password or
 * user (WRONGPASS), none given to a server that asks for one (NOAUTH), an ACL without a command
 * (NOPERM). ioredis only emits them as 'error' events and reconnects, refused again, for ever.
 */
const REFUSAL = /^(?:WRONGPASS|NOAUTH|NOPERM)\b/;
/** Those that leave the connection unusable: the client never gets ready. */
const SIGN_IN_REFUSAL = /^(?:WRONGPASS|NOAUTH)\b/;

/** Redis's reply in `err` when it refuses the client's credentials or rights (REFUSAL), else undefined. */
export function credentialsRefusal(err: unknown): string | undefined {
  const message = err instanceof Error ? err.message : undefined;
  return message !== undefined && REFUSAL.test(message) ? message : undefined;
}

/** Per client, Redis's last refusal of its sign-in since it was last ready. */
const refusedSignIns = new WeakMap<object, string>();

/**
 * Keeps, for refusedSignIn, the reply with which Redis refuses `client`'s sign-in, until the client
 * is ready again. A wrong password is answered WRONGPASS, then NOAUTH to the SELECT that follows
 * it on the same connection: the WRONGPASS is kept. Called where the client is made, before it
 * connects, so a refusal at boot is not missed.
 */
export function watchCredentials(client: Redis): void {
  client.on('error', (err: unknown) => {
    const reply = credentialsRefusal(err);
    if (reply === undefined || !SIGN_IN_REFUSAL.test(reply)) return;
    if (!refusedSignIns.get(client)?.startsWith('WRONGPASS') || reply.startsWith('WRONGPASS'))
      refusedSignIns.set(client, reply);
  });
  client.on('ready', () => refusedSignIns.delete(client));
}

/** Redis's reply refusing `client`'s sign-in while it is not connected (watchCredentials), if it did. */
export function refusedSignIn(client: Redis): string | undefined {
  return client.status === 'ready' ? undefined : refusedSignIns.get(client);
}
