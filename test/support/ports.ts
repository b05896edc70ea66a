import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

/**
 * A loopback port nothing listens on right now: the kernel's pick, from its ephemeral range. Fine
 * for a server that listens once for its whole life; one a test stops and starts again on the
 * same port takes `restartablePort()`.
 */
export function freePort(): Promise<number> {
  return listensOn(0).then((port) => port ?? Promise.reject(new Error('no free loopback port')));
}

/**
 * A free loopback port outside the kernel's ephemeral range, for a server a test or drill stops
 * and starts again on the same port (a private PostgreSQL or Redis, an API process it kills).
 * While such a server is down, any outgoing connection on the machine may be given its port as
 * its own local port — the kernel hands those out from the ephemeral range — and the restart then
 * fails to bind: a CI run lost a private PostgreSQL that way ("could not start server" on
 * restart). Ports outside the range are never handed out; a random one is tried until one binds.
 *
 * The tests and the failure drill may run at once (the drill started by hand during a jest run),
 * each restarting its servers on their ports: each picks from its own half of that span (`band`),
 * so neither can take a port the other's server is down from.
 */
export async function restartablePort(band: 'tests' | 'drill' = 'tests'): Promise<number> {
  const [low, high] = ephemeralRange();
  const whole: [number, number] | undefined =
    low - 1 - FIRST >= 1000
      ? [FIRST, low - 1]
      : 65535 - (high + 1) >= 1000
        ? [high + 1, 65535]
        : undefined;
  if (!whole) return freePort(); // no room outside the range: the kernel's pick, as before
  const middle = Math.floor((whole[0] + whole[1]) / 2);
  const span: [number, number] = band === 'tests' ? [whole[0], middle] : [middle + 1, whole[1]];
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = await listensOn(span[0] + Math.floor(Math.random() * (span[1] - span[0] + 1)));
    if (port) return port;
  }
  throw new Error(`no free loopback port in ${span[0]}-${span[1]}`);
}

/** Above the well-known and registered ports most services on a machine use (5432, 6379, …). */
const FIRST = 10_000;

function ephemeralRange(): [number, number] {
  try {
    const [low, high] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')
      .trim()
      .split(/\s+/)
      .map(Number);
    if (low > 0 && high >= low) return [low, high];
  } catch {
    // not Linux: the IANA range most other systems use
  }
  return [49152, 65535];
}

/** Binds `port` (0: the kernel's pick) on loopback and lets it go: the port, or undefined if taken. */
function listensOn(port: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.on('error', () => resolve(undefined));
    srv.listen(port, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => resolve(typeof addr === 'object' && addr ? addr.port : undefined));
    });
  });
}
