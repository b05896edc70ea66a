import { AddressInfo, Server, Socket, createServer } from 'node:net';
import { connectUpstream } from './tcp-pair';

/**
 * A TCP pass-through in front of Redis that fails the way the path to it does, with no reset
 * unless asked for one:
 * - `vanish(which?)`: the connections open now (those whose port on the Redis side `which` names,
 *   as CLIENT LIST shows it) pass nothing more either way and stay open (a NAT or conntrack entry
 *   lost, a failover behind one address whose old host is gone); new ones work — or with
 *   `newOnesFor`, those opened in the next that many ms are accepted and pass nothing ever (their
 *   handshake never answered: a balancer still in front of a host gone).
 * - `stall(ms)`: nothing passes on any connection, new ones too, for `ms`; then all that was held
 *   goes through in order (a Redis stopped for a moment: a fork, a long script, a paused VM).
 * - `resetAll()`: every connection is reset now (a blink); new ones work at once.
 */
export interface RedisPathProxy {
  /** REDIS_URL with its host and port replaced by the proxy's. */
  url: string;
  vanish(which?: (redisSidePort: number) => boolean, newOnesFor?: number): void;
  stall(ms: number): void;
  resetAll(): void;
  close(): Promise<void>;
}

interface Pair {
  client: Socket;
  upstream: Socket;
  vanished: boolean;
  /** Chunks held while stalled, each with the socket it is for. */
  held: [Socket, Buffer][];
}

export async function startRedisPathProxy(redisUrl: string): Promise<RedisPathProxy> {
  const target = new URL(redisUrl);
  const sockets = new Set<Socket>();
  const pairs = new Set<Pair>();
  let stalledUntil = 0;
  let vanishingUntil = 0;
  let stallTimer: NodeJS.Timeout | undefined;

  const pass = (pair: Pair, to: Socket, chunk: Buffer) => {
    if (pair.vanished) return;
    if (performance.now() < stalledUntil) pair.held.push([to, chunk]);
    else to.write(chunk);
  };
  const server: Server = createServer((client) => {
    const { upstream } = connectUpstream(
      client,
      { host: target.hostname, port: Number(target.port || 6379) },
      sockets,
    );
    const vanished = performance.now() < vanishingUntil;
    const pair: Pair = { client, upstream, vanished, held: [] };
    pairs.add(pair);
    client.on('close', () => pairs.delete(pair));
    client.on('data', (chunk: Buffer) => pass(pair, upstream, chunk));
    upstream.on('data', (chunk: Buffer) => pass(pair, client, chunk));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const via = new URL(redisUrl);
  via.hostname = '127.0.0.1';
  via.port = String((server.address() as AddressInfo).port);
  return {
    url: via.toString(),
    vanish: (which = () => true, newOnesFor = 0) => {
      vanishingUntil = performance.now() + newOnesFor;
      for (const pair of pairs) if (which(pair.upstream.localPort ?? 0)) pair.vanished = true;
    },
    stall: (ms) => {
      stalledUntil = performance.now() + ms;
      clearTimeout(stallTimer);
      stallTimer = setTimeout(() => {
        for (const pair of pairs) {
          for (const [to, chunk] of pair.held.splice(0)) if (!pair.vanished) to.write(chunk);
        }
      }, ms);
    },
    resetAll: () => {
      for (const pair of pairs) pair.client.resetAndDestroy();
    },
    close: () =>
      new Promise<void>((resolve) => {
        clearTimeout(stallTimer);
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
