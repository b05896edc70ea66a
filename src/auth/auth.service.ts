import { Inject, Injectable, Logger } from '@nestjs/common';
import { DomainError } from '../common/errors/domain-error';
import { IdGenerator } from '../common/ids';
import { Clock } from '../common/time/clock';
import { APP_CONFIG, AppConfig } from '../config/config';
import { TransactionHost } from '../database/transaction-host';
import { User, UserRepository } from '../users/user.repository';
import { ChangePasswordDto, LoginDto, RegisterDto, TokensDto, UserDto, mapUser } from './dto/auth.dto';
import { PasswordHasher } from './password-hasher';
import { Role } from './permissions';
import { RefreshTokenRepository } from './refresh-token.repository';
import { TokenService } from './token.service';

/**
 * A token presented again within this many ms of being spent is treated as a concurrent
 * duplicate (two tabs refreshing at once): that request gets 401, the family stays valid, so
 * exactly one of two concurrent refreshes wins. Later reuse is theft: the family is revoked.
 */
export const REFRESH_RACE_LEEWAY_MS = 5000;

/** Accounts and sessions: register, login, refresh rotation with reuse detection, logout. */
@Injectable()
export class AuthService {
  private readonly logger = new Logger('Security');

  constructor(
    private readonly users: UserRepository,
    private readonly refreshTokens: RefreshTokenRepository,
    private readonly hasher: PasswordHasher,
    private readonly tokens: TokenService,
    private readonly tx: TransactionHost,
    private readonly clock: Clock,
    private readonly ids: IdGenerator,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  async register(dto: RegisterDto): Promise<TokensDto> {
    const passwordHash = await this.hasher.hash(dto.password);
    const user = await this.users.create({
      email: dto.email,
      name: dto.name.trim(),
      role: 'customer',
      passwordHash,
    });
    if (!user) throw new DomainError('EMAIL_TAKEN', 'An account with this email exists.');
    return this.startSession(user);
  }

  /** Same answer and similar time for an unknown email and a wrong password. */
  async login(dto: LoginDto): Promise<TokensDto> {
    const user = await this.users.findByEmail(dto.email);
    const ok = user
      ? await this.hasher.verify(user.passwordHash, dto.password)
      : await this.hasher.verifyDummy(dto.password);
    if (!user || !ok) throw new DomainError('INVALID_CREDENTIALS', 'Email or password is wrong.');
    if (this.hasher.needsRehash(user.passwordHash)) {
      await this.users.setPasswordHash(user.id, await this.hasher.hash(dto.password));
    }
    return this.startSession(user);
  }

  /**
   * Spends the presented refresh token and issues a new pair in the same family. A token that
   * was already spent means it was copied: the whole family is revoked (the thief's and the
   * owner's tokens both stop working) and a security event is logged.
   */
  async refresh(token: string): Promise<TokensDto> {
    const now = this.clock.now();
    const result = await this.tx.run(() =>
      this.refreshTokens.spend(this.tokens.hashRefreshToken(token), now),
    );
    const racing =
      result.refusal === 'reused' &&
      result.spentAt !== undefined &&
      now.getTime() - result.spentAt.getTime() < REFRESH_RACE_LEEWAY_MS;
    if (result.refusal === 'reused' && !racing) {
      await this.refreshTokens.revokeFamily(result.familyId, 'reuse-detected', now);
      this.logger.warn({ event: 'refresh_token_reuse', userId: result.userId, familyId: result.familyId }, 'refresh token reuse: family revoked');
      throw new DomainError('REFRESH_TOKEN_REUSED', 'This refresh token was already used; sign in again.');
    }
    if (result.refusal) {
      throw new DomainError('REFRESH_TOKEN_INVALID', 'The refresh token is invalid, expired or already used.');
    }
    const user = await this.users.findById(result.userId);
    if (!user) throw new DomainError('REFRESH_TOKEN_INVALID', 'The refresh token is invalid or expired.');
    return this.issue(user, result.familyId, now);
  }

  /** Revokes the token's family (idempotent; an unknown token is not an error). */
  async logout(token: string): Promise<void> {
    const now = this.clock.now();
    await this.tx.run(async () => {
      const result = await this.refreshTokens.spend(this.tokens.hashRefreshToken(token), now);
      if (result.familyId) await this.refreshTokens.revokeFamily(result.familyId, 'logout', now);
    });
  }

  async changePassword(userId: string, dto: ChangePasswordDto): Promise<void> {
    const user = await this.users.findById(userId);
    if (!user || !(await this.hasher.verify(user.passwordHash, dto.currentPassword))) {
      throw new DomainError('INVALID_CREDENTIALS', 'The current password is wrong.');
    }
    const hash = await this.hasher.hash(dto.newPassword);
    await this.tx.run(async () => {
      await this.users.setPasswordHash(userId, hash);
      await this.refreshTokens.revokeAllOfUser(userId, 'password-changed', this.clock.now());
    });
  }

  async me(userId: string): Promise<UserDto> {
    const user = await this.users.findById(userId);
    if (!user) throw new DomainError('UNAUTHENTICATED', 'The account no longer exists.');
    return mapUser(user);
  }

  /** Creates or promotes an account to `role` with this password (admin:create, seed). */
  async ensureAccount(email: string, password: string, role: Role, name: string): Promise<UserDto> {
    const normalized = email.trim().toLowerCase();
    const existing = await this.users.findByEmail(normalized);
    if (existing && existing.role === role && (await this.hasher.verify(existing.passwordHash, password))) {
      return mapUser(existing);
    }
    const user = await this.users.upsertWithRole({
      email: normalized,
      name,
      role,
      passwordHash: await this.hasher.hash(password),
    });
    return mapUser(user);
  }

  private async startSession(user: User): Promise<TokensDto> {
    const now = this.clock.now();
    const familyId = this.ids.uuid();
    await this.tx.run(() =>
      this.refreshTokens.createFamily(
        familyId,
        user.id,
        now,
        new Date(now.getTime() + this.config.jwt.refreshTtlSeconds * 1000),
      ),
    );
    return this.issue(user, familyId, now);
  }

  private async issue(user: User, familyId: string, now: Date): Promise<TokensDto> {
    const refreshToken = this.tokens.newRefreshToken();
    await this.refreshTokens.addToken(
      familyId,
      this.tokens.hashRefreshToken(refreshToken),
      now,
      new Date(now.getTime() + this.config.jwt.refreshIdleSeconds * 1000),
    );
    const accessToken = await this.tokens.signAccess({
      sub: user.id,
      email: user.email,
      role: user.role,
      fam: familyId,
    });
    return {
      user: mapUser(user),
      accessToken,
      refreshToken,
      expiresIn: this.config.jwt.accessTtlSeconds,
    };
  }
}
