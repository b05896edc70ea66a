import { Injectable } from '@nestjs/common';
import { JwtService } from '@nestjs/jwt';
import { createHash } from 'node:crypto';
import type { Role } from './permissions';
import { SecureRandom } from './secure-random';

export interface AccessClaims {
  sub: string;
  email: string;
  role: Role;
  /** The refresh-token family (session) the token was issued in. */
  fam: string;
  typ: 'access';
}

/** 256 bits. */
const REFRESH_TOKEN_BYTES = 32;

/**
 * Access tokens: JWTs signed with the options of jwtModuleOptions() (HS256 or the key pair's
 * algorithm, iss, aud, exp)
 * carrying `typ: 'access'` and their session (`fam`); verified by JwtStrategy (passport-jwt),
 * which refuses them once that session is revoked. Refresh tokens: opaque CSPRNG strings,
 * stored hashed.
 */
@Injectable()
export class TokenService {
  constructor(
    private readonly jwt: JwtService,
    private readonly random: SecureRandom,
  ) {}

  /** `expiresInSeconds`: shorter than JWT_ACCESS_TTL_SECONDS (the module's own `expiresIn`). */
  signAccess(claims: Omit<AccessClaims, 'typ'>, expiresInSeconds?: number): Promise<string> {
    const payload = { ...claims, typ: 'access' };
    return expiresInSeconds === undefined
      ? this.jwt.signAsync(payload)
      : this.jwt.signAsync(payload, { expiresIn: expiresInSeconds });
  }

  newRefreshToken(): string {
    return this.random.token(REFRESH_TOKEN_BYTES);
  }

  /** SHA-256, hex: what the database keeps instead of the token. */
  hashRefreshToken(token: string): string {
    return createHash('sha256').update(token).digest('hex');
  }
}
