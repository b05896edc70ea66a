import type { JwtModuleOptions, JwtSignOptions } from '@nestjs/jwt';
import {
  KeyObject,
  createHash,
  createHmac,
  createPrivateKey,
  createPublicKey,
  createSecretKey,
} from 'node:crypto';
import type { AppConfig } from '../config/config';

/** The algorithm access tokens are signed with when JWT_SECRET is the key. */
const HMAC_ALGORITHM = 'HS256';

type Algorithm = NonNullable<JwtSignOptions['algorithm']>;

/**
 * The one algorithm access tokens are signed with, and the signing key accepts: HS256 under
 * JWT_SECRET, or the key pair's (ES256, ES384, RS256). One per key: a verifier that took HS256
 * with a public key as its secret would accept tokens anyone can sign (the key is public).
 */
function jwtAlgorithm(config: AppConfig): Algorithm {
  return config.jwt.keyPair?.algorithm ?? HMAC_ALGORITHM;
}

/**
 * A token's `kid`: a short digest of the key that verifies it (an HMAC of a label under an
 * HS256 secret — no plain hash of the secret; SHA-256 of a public key's SPKI), never the key.
 * 96 bits: two keys of one deployment never share one.
 */
export function keyIdOf(key: KeyObject): string {
  const digest =
    key.type === 'secret'
      ? createHmac('sha256', key.export()).update('shop access-token key id').digest()
      : createHash('sha256')
          .update('shop access-token key id\0')
          .update(key.export({ type: 'spki', format: 'der' }))
          .digest();
  return digest.toString('base64url').slice(0, 16);
}

/** The keys access tokens are signed and verified with (one KeyObject each per call). */
function accessTokenKeys(config: AppConfig): {
  sign: KeyObject;
  verify: KeyObject;
  kid: string;
} {
  const pair = config.jwt.keyPair;
  if (pair) {
    const verify = createPublicKey(pair.publicKeyPem);
    return { sign: createPrivateKey(pair.privateKeyPem), verify, kid: keyIdOf(verify) };
  }
  // One KeyObject for the process: jsonwebtoken would otherwise rebuild it from the secret
  // string on every verification (measured: ~14% of the API's CPU under load).
  if (!config.jwt.secret) throw new Error('no access-token key: JWT_SECRET or a key pair');
  const secret = createSecretKey(Buffer.from(config.jwt.secret, 'utf8'));
  return { sign: secret, verify: secret, kid: keyIdOf(secret) };
}

/** A key access tokens are accepted under, with the one algorithm it is accepted with. */
interface VerifyingKey {
  key: KeyObject;
  algorithm: Algorithm;
}

/**
 * Every key an access token is accepted under (built once for the process): the signing key's
 * and a verify-only one's (JWT_VERIFY_ONLY_SECRET or JWT_VERIFY_ONLY_PUBLIC_KEY: a rotation's
 * next or previous key), each with its own algorithm. `keyFor` picks a token's by the `kid` of
 * its header — one verification per token, whichever key signed it:
 * - a `kid` of one of them: that key, if the header's `alg` is that key's (a public key is never
 *   handed to an HMAC, nor a secret to a signature check);
 * - no `kid` (a token signed before kids were written, or by another signer of the same key):
 *   the signing key only;
 * - an unknown `kid`: none — refused unverified. A key removed (a leaked previous one) has its
 *   tokens refused from the next request on; a token whose `kid` was altered fails its signature
 *   anyway.
 * `algorithms`: every key's (the verification's pin; each token is still held to its key's).
 */
export function accessTokenKeyRing(config: AppConfig): {
  algorithms: Algorithm[];
  keyFor(token: string): KeyObject | null;
} {
  const own = accessTokenKeys(config);
  const signing: VerifyingKey = { key: own.verify, algorithm: jwtAlgorithm(config) };
  const byKid = new Map<string, VerifyingKey>([[own.kid, signing]]);
  const extra = config.jwt.verifyOnly;
  if (extra) {
    const key =
      'secret' in extra
        ? createSecretKey(Buffer.from(extra.secret, 'utf8'))
        : createPublicKey(extra.publicKeyPem);
    byKid.set(keyIdOf(key), { key, algorithm: extra.algorithm });
  }
  const algorithms = [...new Set([...byKid.values()].map((k) => k.algorithm))];
  return {
    algorithms,
    keyFor(token) {
      const header = headerOf(token);
      if (!header) return null;
      const picked =
        header.kid === undefined
          ? signing
          : typeof header.kid === 'string'
            ? byKid.get(header.kid)
            : undefined;
      return picked && header.alg === picked.algorithm ? picked.key : null;
    },
  };
}

/** A JWT's header (its first segment, base64url JSON), or null when it has none. */
function headerOf(token: string): { alg?: unknown; kid?: unknown } | null {
  const end = token.indexOf('.');
  if (end <= 0) return null;
  try {
    const header: unknown = JSON.parse(Buffer.from(token.slice(0, end), 'base64url').toString());
    return typeof header === 'object' && header !== null && !Array.isArray(header) ? header : null;
  } catch {
    return null;
  }
}

/**
 * Signing and verification options for access tokens: pinned algorithm (so `alg: none` and
 * any other algorithm are refused), issuer, audience and lifetime from the configuration; each
 * token names its key (`kid`: keyIdOf), which is how JwtStrategy picks the key it verifies with
 * (accessTokenKeyRing). (JwtService's own verification knows the signing key only.)
 */
export function jwtModuleOptions(config: AppConfig): JwtModuleOptions {
  const keys = accessTokenKeys(config);
  const algorithm = jwtAlgorithm(config);
  return {
    // KeyObjects (jsonwebtoken accepts them): `secret` would win over the pair in JwtService
    ...(config.jwt.keyPair
      ? { privateKey: keys.sign, publicKey: keys.verify }
      : { secret: keys.sign }),
    signOptions: {
      algorithm,
      keyid: keys.kid,
      issuer: config.jwt.issuer,
      audience: config.jwt.audience,
      expiresIn: config.jwt.accessTtlSeconds,
    },
    verifyOptions: {
      algorithms: [algorithm],
      issuer: config.jwt.issuer,
      audience: config.jwt.audience,
    },
  };
}
