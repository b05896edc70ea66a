import { ApiPropertyOptional } from '@nestjs/swagger';
import { Transform } from 'class-transformer';
import { IsInt, IsOptional, IsString, Max, Min } from 'class-validator';
import { MaxChars } from '../http/char-length';

/**
 * A query-string number as its plain decimal digits only (no sign, exponent, blank, fraction or
 * leading zero): anything else stays a string, which @IsInt refuses (400). One spelling per
 * number, so `limit=020`, `2e1` or `+20` cannot make a cached listing a miss (catalogCacheKey).
 */
const plainInteger = ({ value }: { value: unknown }): unknown =>
  typeof value === 'string' && /^(0|[1-9][0-9]{0,8})$/.test(value) ? Number(value) : value;

/** `?limit=1..100&cursor=…`; a limit above 100 is a 400, never silently clamped. */
export class PageQueryDto {
  @ApiPropertyOptional({ type: 'integer', minimum: 1, maximum: 100, default: 20 })
  @IsOptional()
  @Transform(plainInteger)
  @IsInt()
  @Min(1)
  @Max(100)
  limit: number = 20;

  @ApiPropertyOptional({
    description: 'Opaque: the `nextCursor` of the previous page',
    maxLength: 512,
  })
  @IsOptional()
  @IsString()
  @MaxChars(512)
  cursor?: string;
}

export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}
