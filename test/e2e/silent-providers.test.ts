import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:http';
import { type AddressInfo, type Socket, connect } from 'node:net';
import type { AppConfig } from '../../src/config/config';
import { ObjectStorage, ObjectStorageUnavailable } from '../../src/catalog/object-storage';
import { GatewayError } from '../../src/payments/payment-gateway';
import { StripeGateway } from '../../src/payments/stripe.gateway';

/**
 * A provider that sends a response's status line, its headers and part of its body, then nothing
 * more on a connection it keeps open (a path cut without a reset; a store pausing mid-copy). The
 * clients' timeouts ended at the headers: the calls never settled, and what awaited them (a
 * worker's job and its pass's lock, a storage webhook and its key's lock) was held until a restart.
 */
async function stallingMidBody(contentType: string, firstPart: string) {
  let requests = 0;
  const server = createServer((req, res) => {
    requests++;
    req.resume();
    res.writeHead(200, { 'content-type': contentType, 'content-length': '4000' });
    res.write(firstPart); // …and nothing more
  });
  server.requestTimeout = 0;
  server.headersTimeout = 0;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests: () => requests,
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** How `call` settled, and after how long. */
async function settled(call: Promise<unknown>): Promise<{ error?: unknown; ms: number }> {
  const started = performance.now();
  const outcome = await call.then(
    () => ({}),
    (error: unknown) => ({ error }),
  );
  return { ...outcome, ms: performance.now() - started };
}

/**
 * A host whose TCP handshake never completes (SYNs dropped: an egress firewall, a route gone): a
 * listener with a backlog of one in a process stopped before it accepts, its queue then filled.
 */
async function neverConnecting() {
  const child = spawn(
    process.execPath,
    [
      '-e',
      "const s = require('net').createServer(); s.listen({ port: 0, host: '127.0.0.1', backlog: 1 }, () => console.log(s.address().port))",
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const port = Number(String(await once(child.stdout, 'data')).trim());
  child.kill('SIGSTOP');
  const fillers: Socket[] = [];
  for (;;) {
    const filler = connect(port, '127.0.0.1').on('error', () => undefined);
    fillers.push(filler);
    const connected = await Promise.race([
      once(filler, 'connect').then(() => true),
      new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 500)),
    ]);
    if (!connected) break; // the queue is full: this one, and any after it, waits for ever
  }
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => {
      for (const filler of fillers) filler.destroy();
      child.kill('SIGKILL');
    },
  };
}

describe('a provider that goes silent', () => {
  it.concurrent(
    'a Stripe call with no deadline of its caller (the worker’s) fails as unavailable within the SDK’s 8 s timeout, not never',
    async () => {
      const stripe = await stallingMidBody(
        'application/json',
        '{"id":"pi_1","object":"payment_intent","amount":1000,',
      );
      try {
        const { error, ms } = await settled(
          new StripeGateway('sk_test_stalled', stripe.url).retrieveIntent('pi_1'),
        );
        expect(error).toBeInstanceOf(GatewayError);
        expect(error).toMatchObject({ kind: 'unavailable', code: 'response_cut' });
        expect(ms).toBeLessThan(12_000);
        expect(stripe.requests()).toBe(1);
      } finally {
        await stripe.close();
      }
    },
    30_000,
  );

  it.concurrent(
    'a Stripe host that never completes the TCP connect: a worker’s call fails as unavailable after the SDK’s three attempts of 8 s, not the OS’s ~2 min each',
    async () => {
      const stripe = await neverConnecting();
      try {
        const { error, ms } = await settled(
          new StripeGateway('sk_test_unreachable', stripe.url).retrieveIntent('pi_1'),
        );
        expect(error).toMatchObject({ kind: 'unavailable' });
        // (three attempts and the SDK's pauses between them: ~25 s)
        expect(ms).toBeLessThan(35_000);
      } finally {
        stripe.close();
      }
    },
    45_000,
  );

  it.concurrent(
    'a copy in the object store fails as the store unavailable within its 5 s socket timeout, not never',
    async () => {
      const store = await stallingMidBody(
        'application/xml',
        '<?xml version="1.0" encoding="UTF-8"?>\n<CopyObjectResult><ETag>"abc"</ETag>',
      );
      const storage = new ObjectStorage({
        storage: {
          endpoint: store.url,
          bucket: 'shop',
          region: 'us-east-1',
          forcePathStyle: true,
          accessKeyId: 'test',
          secretAccessKey: 'test',
          baseUrl: `${store.url}/shop`,
        },
      } as AppConfig);
      try {
        const { error, ms } = await settled(
          storage.copyForServing('products/p/upload', 'products/p/served.png', {
            contentType: 'image/png',
            etag: '"abc"',
          }),
        );
        expect(error).toBeInstanceOf(ObjectStorageUnavailable);
        // (two attempts, maxAttempts)
        expect(ms).toBeLessThan(15_000);
      } finally {
        await store.close();
      }
    },
    30_000,
  );
});
