import { connect } from 'node:net';
import { freePort } from '../support/ports';
import { runScript } from '../support/processes';
import { createTestDatabase, TestDatabase } from '../support/test-database';
import { waitFor } from '../support/wait-for';

/** How many logins one client aborts: a body announced as 1,000 bytes, one sent, the socket closed. */
const ABORTS = 400;

/** One aborted login: Content-Length 1000, a 1-byte body, the connection closed 5 ms later. */
function abortedLogin(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => {
      socket.write(
        `POST /v1/auth/login HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/json\r\n` +
          'Content-Length: 1000\r\n\r\n{',
      );
      setTimeout(() => socket.destroy(), 5);
    });
    socket.on('close', () => resolve());
    socket.on('error', reject);
  });
}

/** The value of `name{labels}` on a Prometheus page (0 when it has no such sample). */
const sample = (page: string, name: string, labels: string): number =>
  Number(new RegExp(`^${name}\\{${labels}\\} (\\d+)$`, 'm').exec(page)?.[1] ?? 0);

/**
 * A client that announces a body, sends a byte of it and hangs up never reaches a guard (no body,
 * no rate limit) and no onResponse hook (no answer): pino-http wrote a `request aborted` line for
 * each — 3,000 from one client in 6.5 s — and no metric counted them. Now each is counted in
 * http_requests_aborted_total, and a client's aborts are one line a window (the first at once, the
 * rest counted in one line when the window ends).
 */
describe('aborted requests (a real API process, LOG_LEVEL=info)', () => {
  let db: TestDatabase;
  let api: ReturnType<typeof runScript>;
  let port: number;
  let metricsPort: number;

  /** The aborted logins counted so far (the API's metrics page). */
  const abortedLogins = async () =>
    sample(
      await fetch(`http://127.0.0.1:${metricsPort}/metrics`).then((r) => r.text()),
      'http_requests_aborted_total',
      'method="POST",route="/v1/auth/login"',
    );

  beforeAll(async () => {
    db = await createTestDatabase();
    [port, metricsPort] = [await freePort(), await freePort()];
    api = runScript(
      'src/main.ts',
      {
        DATABASE_URL: db.url,
        PORT: String(port),
        HOST: '127.0.0.1',
        METRICS_PORT: String(metricsPort),
        RATE_LIMIT_ENABLED: 'true',
        // (a body too slow is refused within ~5 s: the server's 408, no client's abort — at 1 s,
        // a stall of this process between a login's byte and its hang-up, or of the API before it
        // read the hang-up, made an abort a 408)
        HTTP_REQUEST_TIMEOUT_MS: '5000',
        HTTP_HEADERS_TIMEOUT_MS: '5000',
        // (the last test aborts during the shutdown's delay: still served, so still counted)
        SHUTDOWN_DELAY_MS: '3000',
      },
      'info',
    );
    await waitFor(
      'the API to be ready',
      () =>
        fetch(`http://127.0.0.1:${port}/health/ready`).then(
          (r) => r.status,
          () => 0,
        ),
      { until: (s) => s === 200, timeoutMs: 30_000, context: () => api.output().slice(-3000) },
    );
  }, 60_000);

  afterAll(async () => {
    if (api && api.proc.exitCode === null) {
      api.proc.kill('SIGTERM');
      await api.exited;
    }
    await db?.drop();
  });

  it(`${ABORTS} logins one client aborts are all counted, and logged as one line`, async () => {
    const metrics = () => fetch(`http://127.0.0.1:${metricsPort}/metrics`).then((r) => r.text());
    const before = api.output().length;
    for (let i = 0; i < ABORTS; i += 20) {
      await Promise.all(Array.from({ length: 20 }, () => abortedLogin(port)));
    }
    const counted = await waitFor(
      'every abort counted',
      async () =>
        sample(
          await metrics(),
          'http_requests_aborted_total',
          'method="POST",route="/v1/auth/login"',
        ),
      { until: (n) => n >= ABORTS, timeoutMs: 15_000 },
    );
    expect(counted).toBe(ABORTS);
    // an answered request still has its access line
    expect((await fetch(`http://127.0.0.1:${port}/v1/categories`)).status).toBe(200);
    await waitFor('its access line', () => api.output().slice(before), {
      until: (o) => o.includes('"msg":"request completed"'),
    });
    const aborts = () =>
      api
        .output()
        .slice(before)
        .split('\n')
        .filter((l) => l.includes('request aborted'))
        .map((l) => JSON.parse(l) as Record<string, unknown>);
    const line = 'request aborted: POST /v1/auth/login closed before its answer was sent';
    expect(aborts()).toEqual([
      expect.objectContaining({
        level: 30,
        context: 'Http',
        msg: line,
        action: 'POST /v1/auth/login',
        client: 'ip:127.0.0.1',
      }),
    ]);
    // the rest, counted in one line when the client's 10 s window ends
    await waitFor('the window to end', aborts, { until: (l) => l.length > 1, timeoutMs: 15_000 });
    expect(aborts().map((l) => l.msg)).toEqual([line, `${line} (${ABORTS - 1} more in 10 s)`]);
  }, 60_000);

  it("a body too slow, refused with the server's 408, is not counted as the client's abort (review)", async () => {
    const before = await abortedLogins();
    const answer = await new Promise<string>((resolve, reject) => {
      let text = '';
      const socket = connect(port, '127.0.0.1', () =>
        socket.write(
          `POST /v1/auth/login HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/json\r\n` +
            'Content-Length: 1000\r\n\r\n{',
        ),
      );
      socket.on('data', (chunk) => (text += chunk.toString()));
      socket.on('close', () => resolve(text));
      socket.on('error', reject);
    });
    expect(answer).toMatch(/^HTTP\/1\.1 408 /);
    // (the counter is read after the close that would have counted it: the same event loop turn
    // wrote the 408 and destroyed the socket)
    expect(await abortedLogins()).toBe(before);
  }, 30_000);

  it('an abort during the shutdown delay (still serving) is counted: only the final cut is the server closing (second review)', async () => {
    const before = await abortedLogins();
    api.proc.kill('SIGTERM');
    // (draining: the readiness probe says 503 while the delay lets balancers move away)
    await waitFor(
      'the drain to begin',
      () => fetch(`http://127.0.0.1:${port}/health/ready`).then((r) => r.status),
      { until: (status) => status === 503, timeoutMs: 2_000 },
    );
    await abortedLogin(port);
    expect(await waitFor('the abort counted', abortedLogins, { until: (n) => n > before })).toBe(
      before + 1,
    );
  }, 30_000);
});
