/**
 * `npm start`'s image store in development (scripts/local-storage.ts): with STORAGE_ENDPOINT
 * unset the API signs upload URLs for localhost:9000, so something must store the uploads there
 * and tell the API, or API.md's image flow cannot be tried on a fresh clone. Run here on a port
 * of its own, as a real process, with the development key pair and webhook token (none given).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { IncomingMessage, createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { createAdmin } from '../support/auth';
import { createProduct } from '../support/catalog';
import { freePort } from '../support/ports';
import { runScript } from '../support/processes';
import { TestApp, bootTestApp } from '../support/test-app';
import { waitFor } from '../support/wait-for';

const SCRIPT = 'scripts/local-storage.ts';

/** A PUT of `url` with its path exactly as written (no dot segments resolved): the status. */
function rawPut(url: string, contentType: string, body: string): Promise<number> {
  const { hostname, port } = new URL(url);
  const path = url.slice(url.indexOf('/', url.indexOf('//') + 2));
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: hostname,
        port,
        method: 'PUT',
        path,
        headers: { 'content-type': contentType, 'content-length': Buffer.byteLength(body) },
      },
      (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** The store as a process: resolves once it listens (its first line), with its output. */
async function startStore(env: Record<string, string>) {
  const store = runScript(SCRIPT, env);
  await waitFor(
    'the store to listen',
    () =>
      store.output().includes('[storage] S3-compatible image store on') ||
      store.proc.exitCode !== null,
    {
      timeoutMs: 30_000,
      context: store.output,
    },
  );
  if (store.proc.exitCode !== null) throw new Error(`the store exited: ${store.output()}`);
  return store;
}

describe('the local image store of npm start (development)', () => {
  let t: TestApp;
  let dir: string;
  let endpoint: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'shop-local-storage-'));
    endpoint = `http://localhost:${await freePort()}`;
    // the development defaults: no STORAGE_ACCESS_KEY_ID / SECRET / WEBHOOK_TOKEN given
    t = await bootTestApp({
      env: {
        STORAGE_ENDPOINT: endpoint,
        STORAGE_ACCESS_KEY_ID: '',
        STORAGE_SECRET_ACCESS_KEY: '',
        STORAGE_WEBHOOK_TOKEN: '',
      },
    });
  });
  afterAll(async () => {
    await t?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('stores an upload made with the API’s signed URL, tells the API (ready, served), keeps it across a restart and stops on SIGTERM', async () => {
    const env = {
      STORAGE_ENDPOINT: endpoint,
      PORT: new URL(t.baseUrl).port,
      LOCAL_STORAGE_DIR: dir,
    };
    let store = await startStore(env);
    const admin = (await createAdmin(t)).accessToken;
    const p = await createProduct(t, admin);
    const bytes = randomBytes(1500);
    const up = await t.http.post(
      `/v1/admin/products/${p.id}/images`,
      { contentType: 'image/png', sizeBytes: bytes.length },
      { token: admin },
    );
    expect(up.status).toBe(201);
    expect(up.body.uploadUrl.startsWith(`${endpoint}/shop-images/`)).toBe(true);
    // a PUT other than the one signed for is refused, as a real store refuses it
    const forged = await fetch(up.body.uploadUrl, {
      method: 'PUT',
      headers: { 'content-type': 'text/html' },
      body: bytes,
    });
    expect(forged.status).toBe(403);
    const stored = await fetch(up.body.uploadUrl, {
      method: 'PUT',
      headers: { 'content-type': 'image/png' },
      body: bytes,
    });
    expect(stored.status).toBe(200);
    // the store's notification, not a test, makes the image ready
    await waitFor(
      'the image to be ready',
      async () =>
        (
          await t.db.pool.query(`SELECT 1 FROM product_images WHERE id = $1 AND status = 'ready'`, [
            up.body.imageId,
          ])
        ).rowCount === 1,
      { context: store.output },
    );
    // served from the copy its confirmation made (`<upload key>.<uuid>.png`), the upload removed
    const { storage_key: servedKey } = (
      await t.db.pool.query<{ storage_key: string }>(
        `SELECT storage_key FROM product_images WHERE id = $1`,
        [up.body.imageId],
      )
    ).rows[0];
    expect(servedKey.startsWith(`products/${p.id}/${up.body.imageId}.`)).toBe(true);
    const url = `${endpoint}/shop-images/${servedKey}`;
    expect((await t.http.get(`/v1/products/${p.id}`)).body.images).toEqual([url]);
    expect(
      (await fetch(`${endpoint}/shop-images/products/${p.id}/${up.body.imageId}`)).status,
    ).toBe(404);
    const served = await fetch(url);
    expect(served.status).toBe(200);
    expect(Buffer.from(await served.arrayBuffer()).equals(bytes)).toBe(true);

    store.proc.kill('SIGTERM');
    expect(await store.exited).toBe(0);
    // the files stay (var/storage): a restarted store still serves the image
    store = await startStore(env);
    try {
      const again = await fetch(url);
      expect(Buffer.from(await again.arrayBuffer()).equals(bytes)).toBe(true);
    } finally {
      store.proc.kill('SIGTERM');
      await store.exited;
    }
  });

  it('takes writes signed with its key only, as a private bucket does; reads are anyone’s; answers a browser’s preflight', async () => {
    const store = await startStore({
      STORAGE_ENDPOINT: endpoint,
      PORT: new URL(t.baseUrl).port,
      LOCAL_STORAGE_DIR: dir,
    });
    try {
      const object = `${endpoint}/shop-images/products/x/unsigned`;
      // any local process, or any web page the developer has open (a form POST needs no preflight)
      const unsigned = [
        await fetch(object, {
          method: 'PUT',
          headers: { 'content-type': 'text/html' },
          body: '<script>1</script>',
        }),
        await fetch(object, { method: 'DELETE' }),
        await fetch(`${endpoint}/shop-images`, {
          method: 'POST',
          headers: { origin: 'https://evil.example' },
          body: (() => {
            const form = new FormData();
            form.set('key', 'products/x/form');
            form.set('file', new Blob(['<script>1</script>'], { type: 'text/html' }));
            return form;
          })(),
        }),
        // a header signature it cannot have made without the secret
        await fetch(object, {
          method: 'PUT',
          headers: {
            authorization: `AWS4-HMAC-SHA256 Credential=minioadmin/20261203/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=${'0'.repeat(64)}`,
            'x-amz-date': '20261203T000000Z',
            'x-amz-content-sha256': 'UNSIGNED-PAYLOAD',
          },
          body: 'x',
        }),
      ];
      expect(unsigned.map((r) => r.status)).toEqual([403, 403, 403, 403]);
      expect((await fetch(object)).status).toBe(404);
      // nor a listing of the bucket (every upload's key, pending ones too)
      expect((await fetch(`${endpoint}/shop-images?list-type=2`)).status).toBe(403);
      expect((await fetch(`${endpoint}/shop-images/`)).status).toBe(403);
      // an SDK call signed with the store's key (the development pair) is taken, and read back by anyone
      const sdk = new S3Client({
        endpoint,
        region: 'us-east-1',
        forcePathStyle: true,
        credentials: { accessKeyId: 'minioadmin', secretAccessKey: 'minioadmin' },
      });
      try {
        await sdk.send(
          new PutObjectCommand({
            Bucket: 'shop-images',
            Key: 'products/x/signed',
            Body: 'signed bytes',
            ContentType: 'image/png',
          }),
        );
      } finally {
        sdk.destroy();
      }
      expect(await (await fetch(`${endpoint}/shop-images/products/x/signed`)).text()).toBe(
        'signed bytes',
      );
      // a browser's upload from an admin page on another origin: preflight, then the signed PUT
      const admin = (await createAdmin(t)).accessToken;
      const p = await createProduct(t, admin);
      const up = await t.http.post(
        `/v1/admin/products/${p.id}/images`,
        { contentType: 'image/png', sizeBytes: 4 },
        { token: admin },
      );
      const origin = 'http://localhost:5173';
      const preflight = await fetch(up.body.uploadUrl, {
        method: 'OPTIONS',
        headers: {
          origin,
          'access-control-request-method': 'PUT',
          'access-control-request-headers': 'content-type',
        },
      });
      expect(preflight.status).toBe(204);
      expect(preflight.headers.get('access-control-allow-origin')).toBe(origin);
      expect(preflight.headers.get('access-control-allow-methods')).toContain('PUT');
      expect(preflight.headers.get('access-control-allow-headers')).toBe('content-type');
      // an upload URL held by a client: not for a key outside it (the store's folder, another
      // key), nor with headers it was not signed with (a copy of another object)
      const signed = new URL(up.body.uploadUrl);
      const tampered = [
        `${endpoint}/shop-images/..%2F..%2F..%2Fescaped/../${signed.pathname.split('/shop-images/')[1]}${signed.search}`,
        `${endpoint}/shop-images/x%2F..%2Fy/..${signed.pathname.slice('/shop-images'.length)}${signed.search}`,
        `${endpoint}${signed.pathname.replace('/products/', '/products//')}${signed.search}`,
      ];
      for (const url of tampered) {
        // as sent (fetch would resolve the dot segments before sending)
        expect({ url, status: await rawPut(url, 'image/png', 'png!') }).toEqual({
          url,
          status: 403,
        });
      }
      const copied = await fetch(up.body.uploadUrl, {
        method: 'PUT',
        headers: {
          'content-type': 'image/png',
          'x-amz-copy-source': '/shop-images/products/x/signed',
        },
        body: 'png!',
      });
      expect([copied.status, await copied.text()]).toEqual([
        403,
        expect.stringContaining('not signed: x-amz-copy-source'),
      ]);
      const put = await fetch(up.body.uploadUrl, {
        method: 'PUT',
        headers: { origin, 'content-type': 'image/png' },
        body: 'png!',
      });
      expect([put.status, put.headers.get('access-control-allow-origin')]).toEqual([200, origin]);
    } finally {
      store.proc.kill('SIGTERM');
      await store.exited;
    }
  });

  it('retries a notification the API did not take (down, 5xx), with the webhook token', async () => {
    const received: { status: number; authorization?: string; key?: string }[] = [];
    // stands in for an API that answers 503 once (restarting), then takes it
    const api = createServer((req: IncomingMessage, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        const status = received.length === 0 ? 503 : 204;
        received.push({
          status,
          authorization: req.headers.authorization,
          key: (JSON.parse(body) as { Records: { s3: { object: { key: string } } }[] }).Records[0]
            .s3.object.key,
        });
        res.writeHead(status).end();
      });
    });
    await new Promise<void>((resolve) => api.listen(0, '127.0.0.1', resolve));
    const store = await startStore({
      STORAGE_ENDPOINT: endpoint,
      PORT: String((api.address() as AddressInfo).port),
      LOCAL_STORAGE_DIR: dir,
    });
    try {
      // an upload signed by the API (same development key pair), notified to the stand-in
      const admin = (await createAdmin(t)).accessToken;
      const p = await createProduct(t, admin);
      const up = await t.http.post(
        `/v1/admin/products/${p.id}/images`,
        { contentType: 'image/webp', sizeBytes: 10 },
        { token: admin },
      );
      expect(
        (
          await fetch(up.body.uploadUrl, {
            method: 'PUT',
            headers: { 'content-type': 'image/webp' },
            body: randomBytes(10),
          })
        ).status,
      ).toBe(200);
      await waitFor('a second delivery', () => received.length >= 2, { context: store.output });
      const key = `products/${p.id}/${up.body.imageId}`;
      expect(received).toEqual([
        { status: 503, authorization: 'Bearer dev-only-storage-webhook-token', key },
        { status: 204, authorization: 'Bearer dev-only-storage-webhook-token', key },
      ]);
    } finally {
      store.proc.kill('SIGTERM');
      await store.exited;
      await new Promise<void>((resolve) => api.close(() => resolve()));
    }
  });

  it('refuses to run outside development', async () => {
    const store = runScript(SCRIPT, { NODE_ENV: 'production', STORAGE_ENDPOINT: endpoint });
    expect(await store.exited).toBe(1);
    expect(store.output()).toMatch(/\[storage\]/);
  });
});
