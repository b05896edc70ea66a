import { Body, Controller, Get, HttpCode, Ip, Post } from '@nestjs/common';
import {
  ApiBadRequestResponse,
  ApiBearerAuth,
  ApiConflictResponse,
  ApiCreatedResponse,
  ApiForbiddenResponse,
  ApiNoContentResponse,
  ApiOkResponse,
  ApiTags,
  ApiTooManyRequestsResponse,
  ApiUnauthorizedResponse,
} from '@nestjs/swagger';
import { Public } from '../common/http/public.decorator';
import { IgnoreIdempotencyKey } from '../idempotency/idempotency.decorator';
import { AccountService } from './account.service';
import { AuthService } from './auth.service';
import {
  ChangePasswordDto,
  LoginDto,
  RefreshDto,
  RegisterDto,
  TokensDto,
  UserDto,
} from './dto/auth.dto';
import { CurrentPrincipal, Principal } from './principal';
import { RateLimit } from './rate-limit.decorator';

const RATE_LIMITED = { description: 'RATE_LIMITED, with Retry-After' };

// Credential routes: an Idempotency-Key is accepted and ignored (API.md, Idempotency).
@ApiTags('auth')
@IgnoreIdempotencyKey()
@Controller('v1/auth')
export class AuthController {
  constructor(private readonly auth: AuthService) {}

  @Public()
  @RateLimit('register')
  @Post('register')
  @ApiCreatedResponse({ type: TokensDto })
  @ApiBadRequestResponse({ description: 'VALIDATION_FAILED (e.g. password not 8..128 chars)' })
  @ApiConflictResponse({ description: 'EMAIL_TAKEN' })
  @ApiTooManyRequestsResponse(RATE_LIMITED)
  register(@Body() dto: RegisterDto): Promise<TokensDto> {
    return this.auth.register(dto);
  }

  @Public()
  @RateLimit('login')
  @Post('login')
  @HttpCode(200)
  @ApiOkResponse({ type: TokensDto })
  @ApiUnauthorizedResponse({ description: 'INVALID_CREDENTIALS' })
  @ApiTooManyRequestsResponse(RATE_LIMITED)
  login(@Body() dto: LoginDto, @Ip() ip: string): Promise<TokensDto> {
    return this.auth.login(dto, ip);
  }

  @Public()
  @Post('refresh')
  @HttpCode(200)
  @ApiOkResponse({ type: TokensDto, description: 'A new pair; the presented token is spent' })
  @ApiUnauthorizedResponse({
    description: 'REFRESH_TOKEN_INVALID, or REFRESH_TOKEN_REUSED (its session is revoked)',
  })
  refresh(@Body() dto: RefreshDto): Promise<TokensDto> {
    return this.auth.refresh(dto.refreshToken);
  }

  @Public()
  @Post('logout')
  @HttpCode(204)
  @ApiNoContentResponse({ description: 'The session (refresh-token family) is revoked' })
  logout(@Body() dto: RefreshDto): Promise<void> {
    return this.auth.logout(dto.refreshToken);
  }
}

@ApiTags('auth')
@ApiBearerAuth('bearer')
@ApiUnauthorizedResponse({ description: 'UNAUTHENTICATED or TOKEN_INVALID' })
@Controller('v1/me')
export class MeController {
  constructor(private readonly accounts: AccountService) {}

  @Get()
  @ApiOkResponse({ type: UserDto })
  me(@CurrentPrincipal() me: Principal): Promise<UserDto> {
    return this.accounts.me(me.userId);
  }

  @Post('password')
  @HttpCode(204)
  @IgnoreIdempotencyKey()
  @RateLimit('password-change')
  @ApiNoContentResponse({ description: 'Changed; every session of the user is revoked' })
  @ApiForbiddenResponse({ description: 'CURRENT_PASSWORD_INCORRECT' })
  @ApiTooManyRequestsResponse(RATE_LIMITED)
  changePassword(@CurrentPrincipal() me: Principal, @Body() dto: ChangePasswordDto): Promise<void> {
    return this.accounts.changePassword(me.userId, dto);
  }
}
