import { Body, Controller, HttpCode, Ip, Post } from '@nestjs/common';
import {
  ApiCreatedResponse,
  ApiNoContentResponse,
  ApiOkResponse,
  ApiOperation,
  ApiTags,
} from '@nestjs/swagger';
import { ApiProblems } from '../common/http/api-problems';
import { Public } from '../common/http/public.decorator';
import { RateLimit } from '../common/throttling/rate-limit.decorator';
import { IgnoreIdempotencyKey } from '../idempotency/idempotency.decorator';
import { AuthService } from './auth.service';
import { LoginDto, RefreshDto, RegisterDto, TokensDto } from './dto/auth.dto';

// Credential routes: an Idempotency-Key is accepted and ignored (API.md, Idempotency).
@ApiTags('auth')
@IgnoreIdempotencyKey()
@Controller('v1/auth')
export class AuthController {
  constructor(private readonly auth: AuthService) {}

  @Public()
  @RateLimit('register')
  @Post('register')
  @ApiOperation({
    operationId: 'register',
    summary: 'Register a customer account',
    description:
      'Creates a `customer` and signs it in: the answer carries an access token and a ' +
      'single-use refresh token. Limited per client IP (10/hour).',
  })
  @ApiCreatedResponse({ type: TokensDto })
  @ApiProblems(
    [400, '`VALIDATION_FAILED` (e.g. a password not 8..128 characters) or `BAD_REQUEST`'],
    [409, '`EMAIL_TAKEN`'],
  )
  register(@Body() dto: RegisterDto, @Ip() ip: string): Promise<TokensDto> {
    return this.auth.register(dto, ip);
  }

  @Public()
  @RateLimit('login')
  @Post('login')
  @HttpCode(200)
  @ApiOperation({
    operationId: 'login',
    summary: 'Sign in with email and password',
    description:
      'Returns a new access token and refresh token. An unknown email and a wrong password ' +
      'get the same 401. Failed attempts slow an attacker down without locking the owner out.',
  })
  @ApiOkResponse({ type: TokensDto })
  @ApiProblems([401, '`INVALID_CREDENTIALS`'])
  login(@Body() dto: LoginDto, @Ip() ip: string): Promise<TokensDto> {
    return this.auth.login(dto, ip);
  }

  @Public()
  @Post('refresh')
  @HttpCode(200)
  @ApiOperation({
    operationId: 'refreshTokens',
    summary: 'Exchange a refresh token for a new token pair',
    description:
      'The presented refresh token is spent. Presenting a spent one again revokes its whole ' +
      'session (every token of the family) and answers `REFRESH_TOKEN_REUSED`.',
  })
  @ApiOkResponse({ type: TokensDto, description: 'A new pair; the presented token is spent' })
  @ApiProblems([401, '`REFRESH_TOKEN_INVALID`, or `REFRESH_TOKEN_REUSED` (its session is revoked)'])
  refresh(@Body() dto: RefreshDto, @Ip() ip: string): Promise<TokensDto> {
    return this.auth.refresh(dto.refreshToken, ip);
  }

  @Public()
  @Post('logout')
  @HttpCode(204)
  @ApiOperation({
    operationId: 'logout',
    summary: 'Sign out (revoke the session)',
    description:
      "Revokes the refresh token's session; its access tokens stop working within seconds. " +
      'A spent refresh token (one a refresh has replaced) counts as reused, as at `refreshTokens`: ' +
      'its session is revoked all the same, and the reuse is recorded.',
  })
  @ApiNoContentResponse({ description: 'The session (refresh-token family) is revoked' })
  logout(@Body() dto: RefreshDto, @Ip() ip: string): Promise<void> {
    return this.auth.logout(dto.refreshToken, ip);
  }
}
