import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { Transform } from 'class-transformer';
import { IsEmail, IsOptional, IsString, Matches, ValidateBy } from 'class-validator';
import {
  PLAIN_ADDRESS,
  UNICODE_DOMAIN,
  hasCanonicalDomain,
  normalizeEmail,
} from '../../common/email';
import { ROLES, Role } from '../permissions';
import { CharLength, MaxChars } from '../../common/http/char-length';
import {
  NoStackedMarks,
  SingleLine,
  VisibleName,
  withoutDirectionMarks,
} from '../../common/http/single-line';
import { PasswordLength, typedPasswordMax } from '../password-form';

// Request DTOs accept exactly these fields: the global ValidationPipe refuses any other
// (`role`, `userId`, …) with a 400, so mass assignment is impossible.

const toNormalizedEmail = ({ value }: { value: unknown }) =>
  typeof value === 'string' ? normalizeEmail(value) : value;

/** A name trimmed, without the invisible direction marks right-to-left keyboards insert. */
const nameForm = ({ value }: { value: unknown }) =>
  typeof value === 'string' ? withoutDirectionMarks(value).trim() : value;

export const PASSWORD_MIN = 8;
export const PASSWORD_MAX = 128;
/** What a password's length is counted in (password-form.ts). */
const PASSWORD_FORM = `Counted in Unicode NFKC, the form it is hashed in (the same password typed on any keyboard): at most ${PASSWORD_MAX} characters so; as typed (a decomposing keyboard sends a letter's marks apart), at most ${typedPasswordMax(PASSWORD_MAX)}.`;
/** What a password given to be checked may be (login, the current password of a change). */
const CHECKED_PASSWORD_FORM = `As typed, at most ${typedPasswordMax(PASSWORD_MAX)} characters (a password is set with at most ${PASSWORD_MAX} in Unicode NFKC; one set before passwords were normalized may have more there).`;
/** A device token is 66 characters (SessionIssuer#deviceTokenFor); some room for a later form. */
const DEVICE_TOKEN_MAX = 200;

export class RegisterDto {
  @ApiProperty({
    example: 'asha@example.com',
    // an internationalized address is taken in its Unicode form (asha@bücher.de), never as xn--:
    // JSON Schema's `email` format is ASCII only, so a validating client would refuse the one
    // form this route accepts
    format: 'idn-email',
    maxLength: 254,
    description:
      'Stored trimmed and lower-cased. An internationalized domain in its own letters (bücher.de), ' +
      'not its xn-- form (refused)',
  })
  @Transform(toNormalizedEmail)
  @IsEmail()
  @Matches(PLAIN_ADDRESS, {
    message:
      'email must be a plain address: no quotes, backslashes, spaces or invisible characters',
  })
  @Matches(UNICODE_DOMAIN, {
    message: 'email must write its domain in its own letters (bücher.de), not its xn-- form',
  })
  @ValidateBy({
    name: 'canonicalDomain',
    validator: {
      validate: (value: unknown) => typeof value !== 'string' || hasCanonicalDomain(value),
      defaultMessage: () =>
        'email must write its domain as mail software sends it (fish.com, not ﬁsh.com, ⓕish.com or fish。com)',
    },
  })
  @MaxChars(254)
  email!: string;

  @ApiProperty({
    minLength: PASSWORD_MIN,
    maxLength: typedPasswordMax(PASSWORD_MAX),
    description: PASSWORD_FORM,
    example: 'correct-horse-battery',
  })
  @IsString()
  @PasswordLength(PASSWORD_MIN, PASSWORD_MAX)
  password!: string;

  @ApiProperty({
    example: 'Asha',
    minLength: 1,
    maxLength: 200,
    description:
      'One line (no line breaks, tabs or direction controls); shows a letter or digit; no invisible characters; at most 6 combining marks on one character (400)',
  })
  @Transform(nameForm)
  @IsString()
  @CharLength(1, 200)
  @SingleLine()
  @VisibleName()
  @NoStackedMarks()
  name!: string;
}

export class LoginDto {
  @ApiProperty({ example: 'asha@example.com', maxLength: 254 })
  @Transform(toNormalizedEmail)
  @IsString()
  @MaxChars(254)
  email!: string;

  @ApiProperty({
    maxLength: typedPasswordMax(PASSWORD_MAX),
    description: CHECKED_PASSWORD_FORM,
    example: 'correct-horse-battery',
  })
  @IsString()
  // bounded as typed only: a password set before passwords were normalized was bounded so, and
  // may be longer in NFKC (`…` is three characters there); it must still sign in
  @MaxChars(typedPasswordMax(PASSWORD_MAX))
  password!: string;

  @ApiPropertyOptional({
    maxLength: DEVICE_TOKEN_MAX,
    description:
      'The `deviceToken` a login or registration of this account answered on this device. Failed sign-ins are ' +
      'then counted for the device, not for its network address: the failures of a stranger sharing the address ' +
      "(one NAT, a mobile carrier's shared address) do not hold this device back (the per-address request " +
      'limits still count every request). Not a credential; one not made for this account is ignored',
  })
  @IsOptional()
  @IsString()
  @MaxChars(DEVICE_TOKEN_MAX)
  deviceToken?: string;
}

export class RefreshDto {
  @ApiProperty({
    description: 'The opaque refresh token from register, login or refresh',
    minLength: 1,
    maxLength: 200,
    example: 'q3Jd0u2mZr9V7yR1cL8wXb4TnE6sK5pHfA0gYiUoWlM',
  })
  @IsString()
  @CharLength(1, 200)
  refreshToken!: string;
}

export class ChangePasswordDto {
  @ApiProperty({
    maxLength: typedPasswordMax(PASSWORD_MAX),
    description: CHECKED_PASSWORD_FORM,
    example: 'correct-horse-battery',
  })
  @IsString()
  // bounded as typed only: a password set before passwords were normalized was bounded so, and
  // may be longer in NFKC (`…` is three characters there); it must still sign in
  @MaxChars(typedPasswordMax(PASSWORD_MAX))
  currentPassword!: string;

  @ApiProperty({
    minLength: PASSWORD_MIN,
    maxLength: typedPasswordMax(PASSWORD_MAX),
    description: PASSWORD_FORM,
    example: 'staple-lamp-orbit-42',
  })
  @IsString()
  @PasswordLength(PASSWORD_MIN, PASSWORD_MAX)
  newPassword!: string;
}

export class UserDto {
  @ApiProperty({ format: 'uuid' }) id!: string;
  @ApiProperty({ format: 'idn-email' }) email!: string;
  @ApiProperty() name!: string;
  @ApiProperty({ enum: ROLES }) role!: Role;
}

export class TokensDto {
  @ApiProperty({ type: UserDto }) user!: UserDto;
  @ApiProperty({
    description:
      'JWT (HS256; ES256, ES384 or RS256 when the deployment signs with a key pair) for `Authorization: Bearer …`',
  })
  accessToken!: string;
  @ApiProperty({ description: 'Opaque; single use: each refresh returns the next one' })
  refreshToken!: string;
  @ApiProperty({ type: 'integer', description: 'Access-token lifetime in seconds', example: 900 })
  expiresIn!: number;
  @ApiPropertyOptional({
    description:
      'Login and register: keep it on this device (like the refresh token) and send it with its sign-ins ' +
      '(`deviceToken` of login); it is answered back unchanged',
  })
  deviceToken?: string;
}

export function mapUser(u: { id: string; email: string; name: string; role: Role }): UserDto {
  return { id: u.id, email: u.email, name: u.name, role: u.role };
}
