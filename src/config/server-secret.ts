import { createPrivateKey, hkdfSync } from 'node:crypto';
import type { AppConfig } from './config';

/**
 * The server secret sessions' recorded clients are an HMAC under (SessionIssuer.clientKeyOf), and
 * the sign-in limits' Redis keys (FailedAttemptLimiter):
 * JWT_SECRET itself (as before key pairs existed: the records stay valid), or with a key pair a
 * key derived from the private key (HKDF-SHA-256) — the public key, which others hold, would let
 * them reverse the records.
 */
export function sessionClientSecret(config: AppConfig): Buffer | string {
  const pair = config.jwt.keyPair;
  if (!pair) return config.jwt.secret ?? '';
  // the private value itself (JWK `d`), not an encoding of the key: PKCS#8 with or without the
  // optional public key, or SEC1, are one key and must give one HMAC key on every instance
  const { d } = createPrivateKey(pair.privateKeyPem).export({ format: 'jwk' });
  if (!d) throw new Error('the access-token private key has no private value');
  return Buffer.from(hkdfSync('sha256', Buffer.from(d, 'base64url'), Buffer.alloc(0), 'shop session-client key', 32));
}
