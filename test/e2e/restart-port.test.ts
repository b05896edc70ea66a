import { ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { restartablePort } from '../support/ports';
import { PrivatePostgres } from '../support/private-postgres';

/**
 * A server a test stops and starts again keeps its port, and while it is down any outgoing
 * connection on the machine may be given that port as its own (the kernel picks local ports from
 * its ephemeral range): the restart then cannot bind. A CI run lost a private PostgreSQL that way.
 */
describe('ports for servers that restart', () => {
  it('are picked outside the range the kernel hands out to outgoing connections', async () => {
    const [low, high] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')
      .trim()
      .split(/\s+/)
      .map(Number);
    const ports = await Promise.all(Array.from({ length: 50 }, () => restartablePort()));
    // (a range that leaves no room outside it, 1024-65535 say, gets the kernel's pick: nothing to check)
    const room = low - 10_000 > 1_000 || 65_535 - high > 1_000;
    for (const port of ports) expect(!room || port < low || port > high).toBe(true);
  });

  it("the tests' and the failure drill's never meet (run at once, each restarts its servers)", async () => {
    const [low, high] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')
      .trim()
      .split(/\s+/)
      .map(Number);
    const tests = await Promise.all(Array.from({ length: 50 }, () => restartablePort('tests')));
    const drill = await Promise.all(Array.from({ length: 50 }, () => restartablePort('drill')));
    // (no room outside the kernel's range: both get the kernel's pick, nothing to check)
    const room = low - 10_000 > 1_000 || 65_535 - high > 1_000;
    expect(!room || Math.max(...tests) < Math.min(...drill)).toBe(true);
  });

  it('a restart whose port an outgoing connection holds fails, and says why (the server log)', async () => {
    const pg = await PrivatePostgres.start();
    const listener = await listen(); // what the squatting connection connects to
    let squatter: ChildProcess | undefined;
    try {
      await pg.stop('immediate');
      // what the kernel did in CI: an outgoing connection (here to a listener of the test's) whose
      // local port is the stopped server's. Without SO_REUSEADDR, like the kernel's own pick for
      // a client's connect() (Node's bind() always sets it, and a socket with it blocks nothing)
      squatter = spawn('python3', ['-c', HOLD_PORT, String(pg.port), String(listener.port)], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      await new Promise((resolve, reject) => {
        squatter?.stdout?.once('data', resolve);
        squatter?.once('exit', reject);
      });
      await expect(pg.start()).rejects.toThrow(/could not bind|Address already in use/);
      const gone = new Promise((r) => squatter?.once('exit', r));
      squatter.kill();
      await gone;
      await pg.start();
      await pg.createDatabase('after_restart');
    } finally {
      squatter?.kill();
      listener.close();
      await pg.destroy();
    }
  });
});

const HOLD_PORT = `
import socket, struct, sys, time
s = socket.socket()
# closed with a reset, not a FIN: no TIME_WAIT left on the port (that would hold it for a minute)
s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
s.bind(("127.0.0.1", int(sys.argv[1])))
s.connect(("127.0.0.1", int(sys.argv[2])))
print("held", flush=True)
time.sleep(120)
`;

/** A loopback listener on a port of the kernel's choosing (connections accepted and left open). */
function listen(): Promise<{ port: number; close: () => void }> {
  return new Promise((resolve) => {
    const sockets: import('node:net').Socket[] = [];
    const server = createServer((socket) => {
      socket.on('error', () => undefined); // (the squatter leaves with a reset)
      sockets.push(socket);
    });
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      resolve({
        port: typeof address === 'object' && address ? address.port : 0,
        close: () => {
          for (const socket of sockets) socket.destroy();
          server.close();
        },
      });
    });
  });
}
