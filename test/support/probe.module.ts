import {
  Body,
  Controller,
  DynamicModule,
  Get,
  MiddlewareConsumer,
  Module,
  NestModule,
  Post,
} from '@nestjs/common';
import { IsEmail, IsInt, IsString, Max, Min } from 'class-validator';
import { AppModule } from '../../src/app.module';
import { CurrentPrincipal, Principal } from '../../src/auth/principal';
import { Public } from '../../src/common/http/public.decorator';
import { AppConfig } from '../../src/config/config';
import { DomainError } from '../../src/common/errors/domain-error';

class EchoDto {
  @IsEmail()
  email!: string;

  @IsInt()
  @Min(1)
  @Max(10)
  quantity!: number;

  @IsString()
  note!: string;
}

let slowStarted = 0;
/** How many GET /v1/__probe/slow requests have reached their handler (in this process). */
export const slowRequestsStarted = (): number => slowStarted;

/** Test-only routes that exercise the cross-cutting stack (never part of the real app). */
@Public()
@Controller('v1/__probe')
class ProbeController {
  @Post('echo')
  echo(@Body() dto: EchoDto) {
    return dto;
  }

  @Get('boom')
  boom(): never {
    throw new Error('secret internals: SELECT password FROM users');
  }

  @Get('domain')
  domain(): never {
    throw new DomainError('INSUFFICIENT_STOCK', 'Not enough stock.', {
      extensions: { products: [{ productId: 'p1', available: 0 }] },
    });
  }

  @Get('slow')
  async slow(): Promise<{ done: true }> {
    slowStarted++;
    // deliberately slow (wall-clock): a request still running when the app is told to close
    await new Promise((r) => setTimeout(r, 1500));
    return { done: true };
  }
}

let gate: { arrived: () => void; open: Promise<void> } | null = null;

/**
 * Holds the next GET /v1/__probe/gated request before its guards run (in a middleware) until
 * `open()`; `arrived` resolves once it is held.
 */
export function holdNextGatedRequest(): { arrived: Promise<void>; open: () => void } {
  let arrived!: () => void;
  let open!: () => void;
  const arrivedP = new Promise<void>((r) => (arrived = r));
  gate = { arrived, open: new Promise<void>((r) => (open = r)) };
  return { arrived: arrivedP, open };
}

/** An authenticated route (the app's guards apply): who the bearer is. */
@Controller('v1/__probe')
class GatedProbeController {
  @Get('gated')
  gated(@CurrentPrincipal() me: Principal): { userId: string } {
    return { userId: me.userId };
  }
}

@Module({ controllers: [ProbeController, GatedProbeController] })
class ProbeModule implements NestModule {
  configure(consumer: MiddlewareConsumer): void {
    consumer
      .apply((_req: unknown, _res: unknown, next: () => void) => {
        const held = gate;
        gate = null;
        if (!held) return next();
        held.arrived();
        void held.open.then(() => next());
      })
      .forRoutes('v1/__probe/gated');
  }
}

export function withProbe(config: AppConfig): DynamicModule {
  const root = AppModule.register(config);
  return { ...root, imports: [...(root.imports ?? []), ProbeModule] };
}
