import { JwtService } from '@nestjs/jwt';
import { createHash } from 'node:crypto';
import { loadConfig } from '../config/config';
import { jwtModuleOptions } from './jwt-options';
import { SecureRandom } from './secure-random';
import { TokenService } from './token.service';

const SECRET = 'unit-test-secret-unit-test-secret-0123';
const config = loadConfig({
  NODE_ENV: 'development',
  JWT_SECRET: SECRET,
  JWT_ISSUER: 'iss-1',
  JWT_AUDIENCE: 'aud-1',
});

describe('TokenService', () => {
  const service = new TokenService(new JwtService(jwtModuleOptions(config)), new SecureRandom());
  const claims = { sub: 'u-1', email: 'a@b.io', role: 'customer' as const, fam: 'f-1' };

  it('signs HS256 access tokens with iss, aud, sub, exp = iat + TTL and typ access', async () => {
    const token = await service.signAccess(claims);
    const [header, payload] = token
      .split('.')
      .slice(0, 2)
      .map((p) => JSON.parse(Buffer.from(p, 'base64url').toString()));
    expect(header).toMatchObject({ alg: 'HS256' });
    expect(payload).toMatchObject({ ...claims, typ: 'access', iss: 'iss-1', aud: 'aud-1' });
    expect(payload.exp - payload.iat).toBe(config.jwt.accessTtlSeconds);
  });

  it('makes 256-bit refresh tokens from the injected random source and hashes them with SHA-256', () => {
    const token = service.newRefreshToken();
    expect(Buffer.from(token, 'base64url')).toHaveLength(32);
    expect(service.newRefreshToken()).not.toBe(token);
    expect(service.hashRefreshToken(token)).toBe(createHash('sha256').update(token).digest('hex'));

    const fixed = { token: jest.fn().mockReturnValue('fixed-token') };
    const predictable = new TokenService(new JwtService(jwtModuleOptions(config)), fixed);
    expect(predictable.newRefreshToken()).toBe('fixed-token');
    expect(fixed.token).toHaveBeenCalledWith(32);
  });
});
