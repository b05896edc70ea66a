import { Body, Controller, Get, HttpCode, Post } from '@nestjs/common';
import {
  ApiBearerAuth,
  ApiConflictResponse,
  ApiCreatedResponse,
  ApiNoContentResponse,
  ApiOkResponse,
  ApiTags,
  ApiUnauthorizedResponse,
} from '@nestjs/swagger';
import { Public } from '../common/http/public.decorator';
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

@ApiTags('auth')
@Controller('v1/auth')
export class AuthController {
  constructor(private readonly auth: AuthService) {}

  @Public()
  @RateLimit('register')
  @Post('register')
  @ApiCreatedResponse({ type: TokensDto })
  @ApiConflictResponse({ description: 'EMAIL_TAKEN' })
  register(@Body() dto: RegisterDto): Promise<TokensDto> {
    return this.auth.register(dto);
  }

  @Public()
  @RateLimit('login')
  @Post('login')
  @HttpCode(200)
  @ApiOkResponse({ type: TokensDto })
  @ApiUnauthorizedResponse({ description: 'INVALID_CREDENTIALS' })
  login(@Body() dto: LoginDto): Promise<TokensDto> {
    return this.auth.login(dto);
  }

  @Public()
  @Post('refresh')
  @HttpCode(200)
  @ApiOkResponse({ type: TokensDto })
  @ApiUnauthorizedResponse({ description: 'REFRESH_TOKEN_INVALID or REFRESH_TOKEN_REUSED' })
  refresh(@Body() dto: RefreshDto): Promise<TokensDto> {
    return this.auth.refresh(dto.refreshToken);
  }

  @Public()
  @Post('logout')
  @HttpCode(204)
  @ApiNoContentResponse()
  logout(@Body() dto: RefreshDto): Promise<void> {
    return this.auth.logout(dto.refreshToken);
  }
}

@ApiTags('auth')
@ApiBearerAuth('bearer')
@Controller('v1/me')
export class MeController {
  constructor(private readonly auth: AuthService) {}

  @Get()
  @ApiOkResponse({ type: UserDto })
  me(@CurrentPrincipal() me: Principal): Promise<UserDto> {
    return this.auth.me(me.userId);
  }

  @Post('password')
  @HttpCode(204)
  @ApiNoContentResponse()
  changePassword(@CurrentPrincipal() me: Principal, @Body() dto: ChangePasswordDto): Promise<void> {
    return this.auth.changePassword(me.userId, dto);
  }
}
