import type { JwtModuleOptions, JwtSignOptions } from '@nestjs/jwt';
import { KeyObject, createPrivateKey, createPublicKey, createSecretKey } from 'node:crypto';
import type { AppConfig } from '../config/config';

/** The algorithm access tokens are signed with when JWT_SECRET is the key. */
const HMAC_ALGORITHM = 'HS256';

/**
 * The one algorithm access tokens are signed and accepted with: HS256 under JWT_SECRET, or the
 * key pair's (ES256, ES384, RS256). Never both: a verifier that took HS256 with a public key
 * as its secret would accept tokens anyone can sign (the key is public).
 */
export function jwtAlgorithm(config: AppConfig): NonNullable<JwtSignOptions['algorithm']> {
  return config.jwt.keyPair?.algorithm ?? HMAC_ALGORITHM;
}

/** The keys access tokens are signed and verified with (one KeyObject each per call). */
export function accessTokenKeys(config: AppConfig): { sign: KeyObject; verify: KeyObject } {
  const pair = config.jwt.keyPair;
  if (pair) {
    return {
      sign: createPrivateKey(pair.privateKeyPem),
      verify: createPublicKey(pair.publicKeyPem),
    };
  }
  // One KeyObject for the process: jsonwebtoken would otherwise rebuild it from the secret
  // string on every verification (measured: ~14% of the API's CPU under load).
  if (!config.jwt.secret) throw new Error('no access-token key: JWT_SECRET or a key pair');
  const secret = createSecretKey(Buffer.from(config.jwt.secret, 'utf8'));
  return { sign: secret, verify: secret };
}

/**
 * Signing and verification options for access tokens: pinned algorithm (so `alg: none` and
 * any other algorithm are refused), issuer, audience and lifetime from the configuration.
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
