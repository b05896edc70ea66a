import { Injectable } from '@nestjs/common';
import { JwtService } from '@nestjs/jwt';
import { createHash, randomBytes } from 'node:crypto';
import { DomainError } from '../common/errors/domain-error';
import { ROLES, Role } from './permissions';

export interface AccessClaims {
  sub: string;
  email: string;
  role: Role;
  fam: string;
  typ: 'access';
}

export const JWT_ALGORITHM = 'HS256';

/** Signs and verifies access tokens (pinned algorithm, iss, aud, typ) and makes refresh tokens. */
@Injectable()
export class TokenService {
  constructor(private readonly jwt: JwtService) {}

  /** Algorithm, key, issuer, audience and lifetime come from the JwtModule registration. */
  signAccess(claims: Omit<AccessClaims, 'typ'>): Promise<string> {
    return this.jwt.signAsync({ ...claims, typ: 'access' });
  }

  /** Refuses alg none / other algorithms, wrong iss or aud, expired, or non-access tokens. */
  async verifyAccess(token: string): Promise<AccessClaims> {
    let payload: Record<string, unknown>;
    try {
      // pinned algorithm, issuer and audience: see the JwtModule registration
      payload = await this.jwt.verifyAsync(token);
    } catch {
      throw new DomainError('TOKEN_INVALID', 'The access token is invalid or expired.');
    }
    if (
      payload.typ !== 'access' ||
      typeof payload.sub !== 'string' ||
      typeof payload.fam !== 'string' ||
      typeof payload.email !== 'string' ||
      !ROLES.includes(payload.role as Role)
    ) {
      throw new DomainError('TOKEN_INVALID', 'The access token is invalid or expired.');
    }
    return payload as unknown as AccessClaims;
  }

  /** 256 bits from the CSPRNG, base64url. */
  newRefreshToken(): string {
    return randomBytes(32).toString('base64url');
  }

  hashRefreshToken(token: string): string {
    return createHash('sha256').update(token).digest('hex');
  }
}
