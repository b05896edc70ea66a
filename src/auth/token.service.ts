import { Injectable } from '@nestjs/common';
import { JwtService } from '@nestjs/jwt';
import { createHash } from 'node:crypto';
import { DomainError } from '../common/errors/domain-error';
import { ROLES, Role } from './permissions';
import { RevokedSessions } from './revoked-sessions';
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
export const REFRESH_TOKEN_BYTES = 32;

const invalid = () => new DomainError('TOKEN_INVALID', 'The access token is invalid or expired.');

/**
 * Access tokens: JWTs signed and verified with the options of jwtModuleOptions() (HS256 only,
 * iss, aud, exp) carrying `typ: 'access'` and their session (`fam`), refused once that session
 * is revoked (RevokedSessions). Refresh tokens: opaque CSPRNG strings, stored hashed.
 */
@Injectable()
export class TokenService {
  constructor(
    private readonly jwt: JwtService,
    private readonly random: SecureRandom,
    private readonly revoked: RevokedSessions,
  ) {}

  signAccess(claims: Omit<AccessClaims, 'typ'>): Promise<string> {
    return this.jwt.signAsync({ ...claims, typ: 'access' });
  }

  /**
   * Refuses alg none / other algorithms, wrong iss or aud, expired, or non-access tokens, and
   * tokens of a revoked session (logout, password change, refresh-token reuse).
   */
  async verifyAccess(token: string): Promise<AccessClaims> {
    let payload: Record<string, unknown>;
    try {
      payload = await this.jwt.verifyAsync(token);
    } catch {
      throw invalid();
    }
    if (
      payload.typ !== 'access' ||
      typeof payload.exp !== 'number' ||
      typeof payload.sub !== 'string' ||
      typeof payload.fam !== 'string' ||
      typeof payload.email !== 'string' ||
      !ROLES.includes(payload.role as Role)
    ) {
      throw invalid();
    }
    if (await this.revoked.isRevoked(payload.fam)) {
      throw new DomainError('TOKEN_INVALID', 'The session has ended; sign in again.');
    }
    return {
      sub: payload.sub,
      email: payload.email,
      role: payload.role as Role,
      fam: payload.fam,
      typ: 'access',
    };
  }

  newRefreshToken(): string {
    return this.random.token(REFRESH_TOKEN_BYTES);
  }

  /** SHA-256, hex: what the database keeps instead of the token. */
  hashRefreshToken(token: string): string {
    return createHash('sha256').update(token).digest('hex');
  }
}
