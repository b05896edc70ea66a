import { Body, Controller, Get, HttpCode, Ip, Post } from '@nestjs/common';
import { ApiNoContentResponse, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { ApiProblems } from '../common/http/api-problems';
import { RateLimit } from '../common/throttling/rate-limit.decorator';
import { IgnoreIdempotencyKey } from '../idempotency/idempotency.decorator';
import { AccountService } from './account.service';
import { ChangePasswordDto, UserDto } from './dto/auth.dto';
import { CurrentPrincipal, Principal } from './principal';

/** The signed-in account: who am I, change my password. */
@ApiTags('auth')
@Controller('v1/me')
export class MeController {
  constructor(private readonly accounts: AccountService) {}

  @Get()
  @ApiOperation({
    operationId: 'getMe',
    summary: 'The signed-in account',
    description: 'Returns the id, email, name and role of the account the access token belongs to.',
  })
  @ApiOkResponse({ type: UserDto })
  me(@CurrentPrincipal() me: Principal): Promise<UserDto> {
    return this.accounts.me(me.userId);
  }

  @Post('password')
  @HttpCode(204)
  @IgnoreIdempotencyKey()
  @RateLimit('password-change')
  @ApiOperation({
    operationId: 'changePassword',
    summary: 'Change the password',
    description:
      'Needs the current password. Every session of the account is revoked, including the ' +
      'one making the call: sign in again with the new password.',
  })
  @ApiNoContentResponse({ description: 'Changed; every session of the user is revoked' })
  @ApiProblems([403, '`CURRENT_PASSWORD_INCORRECT`'])
  changePassword(
    @CurrentPrincipal() me: Principal,
    @Body() dto: ChangePasswordDto,
    @Ip() ip: string,
  ): Promise<void> {
    return this.accounts.changePassword(me.userId, dto, ip, me.sessionId);
  }
}
