/**
 * What the revoked-session check costs an authenticated request (issue 10, finding 7).
 *
 * 1. In process: JwtStrategy.verifyAccess (passport-jwt verify + the check), sequentially, with the
 *    real Redis check against a stub that answers "not revoked" at once (the code before).
 * 2. Over HTTP: autocannon on GET /v1/me (guard + one primary-key read) of one API process,
 *    alternating rounds with the check stubbed out and live.
 *
 * `npm run bench:revocation` (env BENCH_DURATION seconds per round, default 4;
 * BENCH_CONNECTIONS, default 10). Keep it short on a shared machine.
 */
import 'reflect-metadata';
import { RevokedSessions } from '../src/auth/revoked-sessions';
import { JwtStrategy } from '../src/auth/jwt.strategy';
import { inProcessAppWithCustomer, measureMe } from './support';

const DURATION_S = Number(process.env.BENCH_DURATION ?? 4);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 10);
const VERIFICATIONS = 5000;

async function main(): Promise<void> {
  const { app, base, accessToken } = await inProcessAppWithCustomer('bench_revocation');

  const revoked = app.get(RevokedSessions);
  const live = revoked.isRevoked.bind(revoked);
  const stubbed = () => Promise.resolve(false);
  const tokens = app.get(JwtStrategy);

  const verify = async (label: string) => {
    const started = process.hrtime.bigint();
    for (let i = 0; i < VERIFICATIONS; i++) await tokens.verifyAccess(accessToken);
    const us = Number(process.hrtime.bigint() - started) / 1000 / VERIFICATIONS;
    console.log(`verifyAccess ${label}: ${us.toFixed(1)} µs/op (sequential, ${VERIFICATIONS} ops)`);
    return us;
  };
  /** Many in flight at once: the process's CPU time per verification, not the round trip. */
  const verifyConcurrently = async (label: string) => {
    const cpu = process.cpuUsage();
    const started = process.hrtime.bigint();
    for (let i = 0; i < VERIFICATIONS; i += 100) {
      await Promise.all(Array.from({ length: 100 }, () => tokens.verifyAccess(accessToken)));
    }
    const wallUs = Number(process.hrtime.bigint() - started) / 1000 / VERIFICATIONS;
    const used = process.cpuUsage(cpu);
    const cpuUs = (used.user + used.system) / VERIFICATIONS;
    console.log(
      `verifyAccess ${label}: ${wallUs.toFixed(1)} µs/op wall, ${cpuUs.toFixed(1)} µs/op CPU ` +
        `(100 in flight)`,
    );
    return cpuUs;
  };
  const http = (label: string) =>
    measureMe(base, accessToken, label, { connections: CONNECTIONS, duration: DURATION_S });

  revoked.isRevoked = stubbed;
  await verify('warm-up');
  const offUs = await verify('without check');
  revoked.isRevoked = live;
  const onUs = await verify('with check   ');
  revoked.isRevoked = stubbed;
  const offCpu = await verifyConcurrently('without check');
  revoked.isRevoked = live;
  const onCpu = await verifyConcurrently('with check   ');

  revoked.isRevoked = stubbed;
  await http('warm-up');
  const rounds: { off: number[]; on: number[] } = { off: [], on: [] };
  for (let i = 0; i < 2; i++) {
    revoked.isRevoked = stubbed;
    rounds.off.push(await http('without check'));
    revoked.isRevoked = live;
    rounds.on.push(await http('with check   '));
  }
  const avg = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  console.log(
    `\ncheck: +${(onUs - offUs).toFixed(1)} µs latency, +${(onCpu - offCpu).toFixed(1)} µs CPU ` +
      `per verification; ` +
      `GET /v1/me ${Math.round(avg(rounds.off))} → ${Math.round(avg(rounds.on))} req/s ` +
      `(${((avg(rounds.on) / avg(rounds.off) - 1) * 100).toFixed(1)}%)`,
  );
  await app.close();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
