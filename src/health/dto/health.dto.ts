import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';

export class LivenessDto {
  @ApiProperty({ enum: ['ok'] }) status!: 'ok';
}

export class DependencyStatusDto {
  @ApiProperty({ enum: ['up', 'down'] }) status!: string;
  @ApiPropertyOptional({
    enum: ['closed', 'open', 'half-open', 'isolated'],
    description: "The database circuit breaker's state",
  })
  breaker?: string;
}

export class ReadinessDto {
  @ApiProperty({ enum: ['ok'] }) status!: string;
  @ApiProperty({
    type: 'object',
    additionalProperties: { $ref: '#/components/schemas/DependencyStatusDto' },
    description: 'Each dependency (`database`, `redis`) and its status only',
    example: { database: { status: 'up', breaker: 'closed' }, redis: { status: 'up' } },
  })
  details!: Record<string, DependencyStatusDto>;
}
