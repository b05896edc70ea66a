import { IncomingMessage, ServerResponse, createServer, request } from 'node:http';
import { AddressInfo } from 'node:net';

/**
 * A pass-through HTTP proxy in front of a test double (e.g. fake Stripe) that can hold one
 * request on its way in, so a test can act while the app waits for the answer (stop the
 * database, kill a process) and then let it through.
 */
export interface HoldingProxy {
  url: string;
  /**
   * Holds the next request whose method and path match: `reached` resolves when it arrives;
   * `release()` forwards it (the upstream then acts and answers as usual).
   */
  holdNext(method: string, pathPrefix: string): { reached: Promise<void>; release(): void };
  close(): Promise<void>;
}

export async function startHoldingProxy(target: string): Promise<HoldingProxy> {
  const upstream = new URL(target);
  const holds: { method: string; prefix: string; arrived: () => void; released: Promise<void> }[] =
    [];

  const forward = (req: IncomingMessage, body: Buffer, res: ServerResponse) => {
    const out = request(
      {
        host: upstream.hostname,
        port: upstream.port,
        method: req.method,
        path: req.url,
        headers: { ...req.headers, host: upstream.host },
      },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    out.on('error', () => res.destroy());
    out.end(body);
  };

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const path = (req.url ?? '').split('?')[0];
      const hold = holds.find((h) => h.method === req.method && path.startsWith(h.prefix));
      if (!hold) return forward(req, body, res);
      holds.splice(holds.indexOf(hold), 1);
      hold.arrived();
      void hold.released.then(() => forward(req, body, res));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    holdNext(method, pathPrefix) {
      let arrived!: () => void;
      let release!: () => void;
      const reached = new Promise<void>((r) => (arrived = r));
      const released = new Promise<void>((r) => (release = r));
      holds.push({ method, prefix: pathPrefix, arrived, released });
      return { reached, release };
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      }),
  };
}
