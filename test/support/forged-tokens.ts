import { randomUUID } from 'node:crypto';
import type { AppConfig } from '../../src/config/config';

const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');

/** The claims of an access token an attacker would make: an admin's, for this deployment's issuer and audience. */
export function forgedAdminClaims(config: AppConfig): Record<string, unknown> {
  const now = Math.floor(Date.now() / 1000);
  return {
    sub: randomUUID(),
    email: 'mallory@evil.test',
    role: 'admin',
    fam: randomUUID(),
    typ: 'access',
    iss: config.jwt.issuer,
    aud: config.jwt.audience,
    iat: now,
    exp: now + 300,
  };
}

/** A JWT with this header algorithm and claims, signed by `sign` over `header.payload`. */
export function forgeToken(alg: string, claims: object, sign: (body: string) => Buffer): string {
  const body = `${b64({ alg, typ: 'JWT' })}.${b64(claims)}`;
  return `${body}.${sign(body).toString('base64url')}`;
}
