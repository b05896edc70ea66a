import { Socket, connect } from 'node:net';

/**
 * The upstream half of a test proxy's connection: a socket to `target` for `client`, both kept in
 * `sockets` (for the proxy's close) and both ended together when either closes or fails.
 */
export function connectUpstream(
  client: Socket,
  target: { host: string; port: number },
  sockets: Set<Socket>,
): { upstream: Socket; end: () => void } {
  const upstream = connect(target.port, target.host);
  sockets.add(client).add(upstream);
  const end = () => {
    client.destroy();
    upstream.destroy();
    sockets.delete(client);
    sockets.delete(upstream);
  };
  client.on('error', end).on('close', end);
  upstream.on('error', end).on('close', end);
  return { upstream, end };
}
