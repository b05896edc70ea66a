import { Module } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { JwtModule } from '@nestjs/jwt';
import { TypeOrmModule } from '@nestjs/typeorm';
import { APP_CONFIG, AppConfig } from '../config/config';
import { ClientRateLimitGuard, UserRateLimitGuard } from '../common/throttling/rate-limit.guard';
import { ThrottlingModule } from '../common/throttling/throttling.module';
import { UsersModule } from '../users/users.module';
import { AccessTokenGuard } from './access-token.guard';
import { AccountService } from './account.service';
import { AuthController } from './auth.controller';
import { MeController } from './me.controller';
import { AuthService } from './auth.service';
import { RefreshTokenFamilyEntity } from './entities/refresh-token-family.entity';
import { RefreshTokenEntity } from './entities/refresh-token.entity';
import { DeletedSessionEntity } from './entities/deleted-session.entity';
import { jwtModuleOptions } from './jwt-options';
import { JwtStrategy } from './jwt.strategy';
import { PasswordHasher } from './password-hasher';
import { PermissionsGuard } from './permissions.guard';
import { RefreshTokenRepository } from './refresh-token.repository';
import { PendingRevocations } from './pending-revocations';
import { RevokedSessions } from './revoked-sessions';
import { SessionsOnRecord } from './sessions-on-record';
import { SecureRandom } from './secure-random';
import { SecurityEvents } from './security-events';
import { SessionIssuer } from './session-issuer';
import { TokenService } from './token.service';

/**
 * Accounts, sessions and the global guards. Global guards run in the order registered here:
 *   1. ClientRateLimitGuard  per-IP / per-account limits (every request, even unauthenticated)
 *   2. AccessTokenGuard      default-deny: a valid access token (JwtStrategy, passport-jwt)
 *                            unless the route is @Public()
 *   3. UserRateLimitGuard    per-user limits (needs the principal)
 *   4. PermissionsGuard      @RequirePermission(...) → 403 FORBIDDEN
 */
@Module({
  imports: [
    JwtModule.registerAsync({
      inject: [APP_CONFIG],
      useFactory: (c: AppConfig) => jwtModuleOptions(c),
    }),
    TypeOrmModule.forFeature([RefreshTokenFamilyEntity, RefreshTokenEntity, DeletedSessionEntity]),
    UsersModule,
    ThrottlingModule,
  ],
  controllers: [AuthController, MeController],
  providers: [
    AuthService,
    AccountService,
    SessionIssuer,
    PasswordHasher,
    TokenService,
    JwtStrategy,
    RevokedSessions,
    SessionsOnRecord,
    PendingRevocations,
    SecureRandom,
    SecurityEvents,
    RefreshTokenRepository,
    { provide: APP_GUARD, useExisting: ClientRateLimitGuard },
    { provide: APP_GUARD, useClass: AccessTokenGuard },
    { provide: APP_GUARD, useExisting: UserRateLimitGuard },
    { provide: APP_GUARD, useClass: PermissionsGuard },
  ],
  exports: [
    AuthService,
    AccountService,
    RefreshTokenRepository,
    TokenService,
    JwtStrategy,
    PasswordHasher,
    SessionIssuer,
    SecurityEvents,
  ],
})
export class AuthModule {}
