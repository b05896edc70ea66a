import { Module } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { JwtModule } from '@nestjs/jwt';
import { createSecretKey } from 'node:crypto';
import { APP_CONFIG, AppConfig } from '../config/config';
import { RateLimitGuard } from '../common/throttling/rate-limit.guard';
import { ThrottlingModule } from '../common/throttling/throttling.module';
import { UsersModule } from '../users/users.module';
import { AccessTokenGuard } from './access-token.guard';
import { AuthController, MeController } from './auth.controller';
import { AuthService } from './auth.service';
import { PasswordHasher } from './password-hasher';
import { PermissionsGuard } from './permissions.guard';
import { RefreshTokenRepository } from './refresh-token.repository';
import { JWT_ALGORITHM, TokenService } from './token.service';

/**
 * Accounts, tokens and the global guards, in this order: access token (default-deny), rate
 * limits (which may key on the user), permissions.
 */
@Module({
  imports: [
    JwtModule.registerAsync({
      inject: [APP_CONFIG],
      // One KeyObject for the process: jsonwebtoken would otherwise rebuild it from the
      // secret string on every verification (measured: ~14% of the API's CPU under load).
      useFactory: (config: AppConfig) => ({
        secret: createSecretKey(Buffer.from(config.jwt.secret, 'utf8')),
        signOptions: {
          algorithm: JWT_ALGORITHM,
          issuer: config.jwt.issuer,
          audience: config.jwt.audience,
          expiresIn: config.jwt.accessTtlSeconds,
        },
        verifyOptions: {
          algorithms: [JWT_ALGORITHM],
          issuer: config.jwt.issuer,
          audience: config.jwt.audience,
        },
      }),
    }),
    UsersModule,
    ThrottlingModule,
  ],
  controllers: [AuthController, MeController],
  providers: [
    AuthService,
    PasswordHasher,
    TokenService,
    RefreshTokenRepository,
    { provide: APP_GUARD, useClass: AccessTokenGuard },
    { provide: APP_GUARD, useExisting: RateLimitGuard },
    { provide: APP_GUARD, useClass: PermissionsGuard },
  ],
  exports: [AuthService],
})
export class AuthModule {}
