/**
 * What passport-jwt costs an authenticated request (issue 13, item 2): the global guard as it
 * is (AccessTokenGuard extends AuthGuard('jwt') → passport.authenticate → JwtStrategy) against
 * the hand-written guard it replaced (JwtService.verifyAsync + the same claim and revocation
 * checks, reproduced below), in the same process and run.
 *
 * 1. In process: N guard passes (canActivate on a fake HTTP context), sequential and 100 in
 *    flight (CPU per verification).
 * 2. Over HTTP: autocannon on GET /v1/me of one API process, alternating rounds with the
 *    guard's canActivate swapped between the two implementations.
 *
 * `npm run bench:auth-guard` (env BENCH_DURATION seconds per
 * round, default 4; BENCH_CONNECTIONS, default 10). Keep it short on a shared machine.
 */
import 'reflect-metadata';
import type { ExecutionContext } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { JwtService } from '@nestjs/jwt';
import { AccessTokenGuard } from '../src/auth/access-token.guard';
import { JwtStrategy } from '../src/auth/jwt.strategy';
import { ROLES, Role, permissionsOf } from '../src/auth/permissions';
import type { AuthenticatedRequest } from '../src/auth/principal';
import { RevokedSessions } from '../src/auth/revoked-sessions';
import { DomainError } from '../src/common/errors/domain-error';
import { IS_PUBLIC } from '../src/common/http/public.decorator';
import { inProcessAppWithCustomer, measureMe } from './support';

const DURATION_S = Number(process.env.BENCH_DURATION ?? 4);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 10);
const VERIFICATIONS = 5000;

type CanActivate = (this: AccessTokenGuard, context: ExecutionContext) => Promise<boolean>;

async function main(): Promise<void> {
  const { app, base, accessToken } = await inProcessAppWithCustomer('bench_guard');

  const jwt = app.get(JwtService);
  const revoked = app.get(RevokedSessions);
  const reflector = app.get(Reflector);
  const passportCanActivate = AccessTokenGuard.prototype.canActivate as CanActivate;
  /** The guard before passport (commit e3540f8), verbatim in effect. */
  const handWrittenCanActivate: CanActivate = async function (this: AccessTokenGuard, context) {
    if (context.getType() !== 'http') return true;
    if (
      reflector.getAllAndOverride<boolean>(IS_PUBLIC, [context.getHandler(), context.getClass()])
    ) {
      return true;
    }
    const request = context.switchToHttp().getRequest<AuthenticatedRequest>();
    const header = request.headers.authorization;
    const match = typeof header === 'string' ? /^Bearer ([^\s]+)$/i.exec(header) : null;
    if (!match) throw new DomainError('UNAUTHENTICATED', 'A bearer access token is required.');
    let payload: Record<string, unknown>;
    try {
      payload = await jwt.verifyAsync(match[1]);
    } catch {
      throw new DomainError('TOKEN_INVALID', 'The access token is invalid or expired.');
    }
    if (
      payload.typ !== 'access' ||
      typeof payload.exp !== 'number' ||
      typeof payload.sub !== 'string' ||
      typeof payload.fam !== 'string' ||
      typeof payload.email !== 'string' ||
      !ROLES.includes(payload.role as Role)
    ) {
      throw new DomainError('TOKEN_INVALID', 'The access token is invalid or expired.');
    }
    if (await revoked.isRevoked(payload.fam)) {
      throw new DomainError('TOKEN_INVALID', 'The session has ended; sign in again.');
    }
    const role = payload.role as Role;
    request.user = {
      userId: payload.sub,
      email: payload.email,
      role,
      permissions: permissionsOf(role),
    };
    return true;
  };
  const use = (impl: CanActivate) => {
    AccessTokenGuard.prototype.canActivate = impl;
  };

  const guard = new AccessTokenGuard(reflector, app.get(JwtStrategy));
  const handler = () => undefined;
  const context = () => {
    const request = { headers: { authorization: `Bearer ${accessToken}` } };
    return {
      getType: () => 'http',
      getHandler: () => handler,
      getClass: () => Object,
      switchToHttp: () => ({ getRequest: () => request, getResponse: () => ({}) }),
    } as unknown as ExecutionContext;
  };

  const sequential = async (label: string) => {
    const started = process.hrtime.bigint();
    for (let i = 0; i < VERIFICATIONS; i++) await guard.canActivate(context());
    const us = Number(process.hrtime.bigint() - started) / 1000 / VERIFICATIONS;
    console.log(`guard ${label}: ${us.toFixed(1)} µs/op (sequential, ${VERIFICATIONS} ops)`);
    return us;
  };
  const concurrent = async (label: string) => {
    const cpu = process.cpuUsage();
    for (let i = 0; i < VERIFICATIONS; i += 100) {
      await Promise.all(
        Array.from({ length: 100 }, () => Promise.resolve(guard.canActivate(context()))),
      );
    }
    const used = process.cpuUsage(cpu);
    const cpuUs = (used.user + used.system) / VERIFICATIONS;
    console.log(`guard ${label}: ${cpuUs.toFixed(1)} µs/op CPU (100 in flight)`);
    return cpuUs;
  };
  const http = (label: string) =>
    measureMe(base, accessToken, label, { connections: CONNECTIONS, duration: DURATION_S });
  const avg = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

  const micro = { hand: [] as number[], passport: [] as number[] };
  const cpu = { hand: [] as number[], passport: [] as number[] };
  use(passportCanActivate);
  await sequential('warm-up     ');
  for (let i = 0; i < 2; i++) {
    use(handWrittenCanActivate);
    micro.hand.push(await sequential('hand-written'));
    cpu.hand.push(await concurrent('hand-written'));
    use(passportCanActivate);
    micro.passport.push(await sequential('passport-jwt'));
    cpu.passport.push(await concurrent('passport-jwt'));
  }

  await http('warm-up     ');
  const rounds = { hand: [] as number[], passport: [] as number[] };
  for (let i = 0; i < 2; i++) {
    use(handWrittenCanActivate);
    rounds.hand.push(await http('hand-written'));
    use(passportCanActivate);
    rounds.passport.push(await http('passport-jwt'));
  }
  console.log(
    `\npassport-jwt vs hand-written guard: ${avg(micro.hand).toFixed(1)} → ` +
      `${avg(micro.passport).toFixed(1)} µs/op latency, ${avg(cpu.hand).toFixed(1)} → ` +
      `${avg(cpu.passport).toFixed(1)} µs/op CPU; GET /v1/me ${Math.round(avg(rounds.hand))} → ` +
      `${Math.round(avg(rounds.passport))} req/s ` +
      `(${((avg(rounds.passport) / avg(rounds.hand) - 1) * 100).toFixed(1)}%)`,
  );
  await app.close();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
