/**
 * Issue 12, item 7: product image uploads against a real S3-compatible server.
 *
 * The API hands out SigV4 pre-signed PUT URLs (@aws-sdk/s3-request-presigner) with the
 * Content-Type and Content-Length signed in; the client PUTs the bytes straight to the store;
 * the store's S3 event notification, delivered as MinIO's webhook target delivers it
 * (`Authorization: Bearer <STORAGE_WEBHOOK_TOKEN>`), is confirmed with HeadObject and marks the
 * image ready. The store is s3rver (npm) behind a SigV4 query-signature gate (see local-s3.ts).
 */
import { randomBytes } from 'node:crypto';
import { type AddressInfo, type Socket, createServer } from 'node:net';
import { type IncomingHttpHeaders, get as httpGet } from 'node:http';
import {
  CopyObjectCommand,
  DeleteObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { Logger } from '@nestjs/common';
import { CatalogCache } from '../../src/catalog/catalog-cache';
import { ImageRepository } from '../../src/catalog/image.repository';
import { ImagesService } from '../../src/catalog/images.service';
import { ObjectStorage, ObjectStorageUnavailable } from '../../src/catalog/object-storage';
import { Clock } from '../../src/common/time/clock';
import { createAdmin } from '../support/auth';
import { createProduct } from '../support/catalog';
import {
  LocalS3,
  presignedSignatureProblem,
  startLocalS3,
} from '../../scripts/local-storage/local-s3';
import { TestApp, bootTestApp } from '../support/test-app';
import { holdIdempotencyKey } from '../support/idempotency-keys';
import { newKey } from '../support/fixtures';

const TOKEN = randomBytes(24).toString('hex');

describe('product images on S3-compatible storage (issue 12 item 7)', () => {
  let s3: LocalS3;
  let t: TestApp;
  let admin: string;

  beforeAll(async () => {
    s3 = await startLocalS3();
    t = await bootTestApp({ env: { ...s3.env, STORAGE_WEBHOOK_TOKEN: TOKEN } });
    admin = (await createAdmin(t)).accessToken;
  });
  afterAll(async () => {
    await t?.close();
    await s3?.close();
  });

  const requestUpload = async (productId: string, contentType: string, sizeBytes: number) => {
    const res = await t.http.post(
      `/v1/admin/products/${productId}/images`,
      { contentType, sizeBytes },
      { token: admin },
    );
    expect(res.status).toBe(201);
    return res.body as { imageId: string; uploadUrl: string; expiresAt: string };
  };

  const put = (url: string, contentType: string, bytes: Buffer) =>
    fetch(url, { method: 'PUT', headers: { 'content-type': contentType }, body: bytes });

  /** POSTs a notification as the store's webhook target does; `null` sends no Authorization. */
  const notify = (body: unknown, authorization: string | null = `Bearer ${TOKEN}`) =>
    t.http.request('POST', '/v1/webhooks/storage', undefined, {
      raw: JSON.stringify(body),
      headers: authorization === null ? {} : { authorization },
    });

  const imageRow = async (imageId: string) =>
    (
      await t.db.pool.query<{ status: string; ready_at: Date | null }>(
        `SELECT status, ready_at FROM product_images WHERE id = $1`,
        [imageId],
      )
    ).rows[0];

  /**
   * The key a ready image is served from: a copy of its upload made when it was confirmed,
   * `<upload key>.<uuid>.<extension>` (checked against that shape here).
   */
  const servedKey = async (imageId: string) => {
    const { storage_key: key, product_id: productId } = (
      await t.db.pool.query<{ storage_key: string; product_id: string }>(
        `SELECT storage_key, product_id FROM product_images WHERE id = $1 AND status = 'ready'`,
        [imageId],
      )
    ).rows[0];
    expect(key).toMatch(
      new RegExp(`^products/${productId}/${imageId}\\.[0-9a-f-]{36}\\.(png|jpg|webp)$`),
    );
    return key;
  };

  /** The keys the store holds under a prefix, sorted. */
  const objectsUnder = async (prefix: string) => {
    const client = (t.app.get<ObjectStorage>(ObjectStorage) as unknown as { client: S3Client })
      .client;
    const listed = await client.send(
      new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: prefix }),
    );
    return (listed.Contents ?? []).map((o) => o.Key!).sort();
  };

  /** The store's own event for the n-th object written (1-based), as it emitted it. */
  const storeEvent = async (n: number) => (await s3.waitForEvents(n))[n - 1];
  /** Until restored, the store refuses every command of `type` (403: a key without its permission). */
  const refuseCommands = (type: abstract new (...args: never[]) => unknown) => {
    const client = (t.app.get<ObjectStorage>(ObjectStorage) as unknown as { client: S3Client })
      .client;
    const send = client.send.bind(client) as (command: unknown) => Promise<unknown>;
    return jest.spyOn(client, 'send').mockImplementation(((command: unknown) =>
      command instanceof type
        ? Promise.reject(
            new S3ServiceException({
              name: 'AccessDenied',
              $fault: 'client',
              $metadata: { httpStatusCode: 403 },
              message: 'Access Denied',
            }),
          )
        : send(command)) as never);
  };

  it('uploads with the pre-signed URL, and the store notification makes the image ready and visible', async () => {
    const p = await createProduct(t, admin);
    const bytes = randomBytes(2048);
    const before = Date.now();
    const up = await requestUpload(p.id, 'image/png', bytes.length);
    const key = `products/${p.id}/${up.imageId}`;
    const url = new URL(up.uploadUrl);
    expect(`${url.origin}${url.pathname}`).toBe(`${s3.endpoint}/${s3.bucket}/${key}`);
    expect(url.searchParams.get('X-Amz-Algorithm')).toBe('AWS4-HMAC-SHA256');
    expect(url.searchParams.get('X-Amz-Expires')).toBe('900');
    expect(url.searchParams.get('X-Amz-SignedHeaders')).toBe('content-length;content-type;host');
    // X-Amz-Date has whole seconds: the URL expires 900 s after the second it was signed in, some
    // time between `before` and now (a request crossing a second's boundary is a second later)
    const after = Date.now();
    const expiresAt = Date.parse(up.expiresAt);
    expect(expiresAt % 1000).toBe(0);
    expect(expiresAt).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000 + 900_000);
    expect(expiresAt).toBeLessThanOrEqual(Math.floor(after / 1000) * 1000 + 900_000);

    const eventsBefore = s3.events.length;
    const stored = await put(up.uploadUrl, 'image/png', bytes);
    expect([stored.status, await stored.text()]).toEqual([200, '']);
    const event = await storeEvent(eventsBefore + 1);
    expect(event).toMatchObject({
      Records: [{ eventName: 'ObjectCreated:Put', s3: { object: { key } } }],
    });
    expect((await imageRow(up.imageId)).status).toBe('pending');

    // the store's webhook target delivers its event, here three times at once (retries race)
    const deliveries = await Promise.all([notify(event), notify(event), notify(event)]);
    expect(deliveries.map((d) => d.status)).toEqual([204, 204, 204]);
    const row = await imageRow(up.imageId);
    expect(row.status).toBe('ready');

    const product = await t.http.get(`/v1/products/${p.id}`);
    expect(product.status).toBe(200);
    const served = await servedKey(up.imageId);
    expect(product.body.imageUrl).toBe(`${s3.endpoint}/${s3.bucket}/${served}`);
    expect(product.body.images).toEqual([product.body.imageUrl]);
    const fetched = await fetch(product.body.imageUrl);
    expect(fetched.status).toBe(200);
    expect(Buffer.from(await fetched.arrayBuffer()).equals(bytes)).toBe(true);
    // the upload itself is removed: the copy is what is served
    expect((await fetch(`${s3.endpoint}/${s3.bucket}/${key}`)).status).toBe(404);

    // a later duplicate changes nothing
    expect((await notify(event)).status).toBe(204);
    expect((await imageRow(up.imageId)).ready_at).toEqual(row.ready_at);

    // a second image: the main one stays, and the detail lists both, in the order they became ready
    const second = await requestUpload(p.id, 'image/webp', 1024);
    const secondEvents = s3.events.length;
    expect((await put(second.uploadUrl, 'image/webp', randomBytes(1024))).status).toBe(200);
    expect((await notify(await storeEvent(secondEvents + 1))).status).toBe(204);
    const both = await t.http.get(`/v1/products/${p.id}`);
    expect(both.body.imageUrl).toBe(product.body.imageUrl);
    expect(both.body.images).toEqual([
      product.body.imageUrl,
      `${s3.endpoint}/${s3.bucket}/${await servedKey(second.imageId)}`,
    ]);
    // the admin's answers show the same product
    const edited = await t.http.patch(
      `/v1/admin/products/${p.id}`,
      { description: 'two pictures' },
      { token: admin },
    );
    expect(edited.body.images).toEqual(both.body.images);

    // the operator puts a CDN in front (STORAGE_BASE_URL) and restarts: every image URL follows,
    // the main one too, and none is listed twice
    const cdn = await bootTestApp({
      db: t.db,
      env: {
        ...s3.env,
        STORAGE_WEBHOOK_TOKEN: TOKEN,
        STORAGE_BASE_URL: 'https://cdn.shop.test/img',
      },
    });
    try {
      const viaCdn = await cdn.http.get(`/v1/products/${p.id}`);
      expect(viaCdn.body.imageUrl).toBe(`https://cdn.shop.test/img/${served}`);
      expect(viaCdn.body.images).toEqual([
        `https://cdn.shop.test/img/${served}`,
        `https://cdn.shop.test/img/${await servedKey(second.imageId)}`,
      ]);
      const listed = await cdn.http.get(`/v1/products?limit=100&sort=newest`);
      expect(listed.body.items.find((i: { id: string }) => i.id === p.id).imageUrl).toBe(
        `https://cdn.shop.test/img/${served}`,
      );
    } finally {
      await cdn.close();
    }
  });

  it('of concurrent confirmations of one upload exactly one marks the image ready', async () => {
    const p = await createProduct(t, admin);
    const up = await requestUpload(p.id, 'image/png', 16);
    const key = `products/${p.id}/${up.imageId}`;
    const images = t.app.get(ImageRepository);
    const at = new Date();
    // each copy noted before it is made, as a confirmation does
    for (let i = 0; i < 8; i++) await images.noteStray(up.imageId, `${key}.${i}.png`, at);
    const winners = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        images.markReady(key, `${key}.${i}.png`, new Date(at.getTime() + i)),
      ),
    );
    expect(winners.filter((w) => w !== null)).toEqual([p.id]);
    const product = await t.db.pool.query<{ image_url: string }>(
      `SELECT image_url FROM products WHERE id = $1`,
      [p.id],
    );
    const row = await imageRow(up.imageId);
    // the one winner's values: its time, and its key as the product's main image
    expect(product.rows[0].image_url).toBe(
      (await t.db.pool.query(`SELECT storage_key FROM product_images WHERE id = $1`, [up.imageId]))
        .rows[0].storage_key,
    );
    expect(product.rows[0].image_url).toMatch(new RegExp(`^${key}\\.[0-7]\\.png$`));
    expect(row.ready_at!.getTime() - at.getTime()).toBeGreaterThanOrEqual(0);
    expect(row.ready_at!.getTime() - at.getTime()).toBeLessThan(8);
  });

  it('accepts MinIO-shaped notifications (s3:ObjectCreated:Put, URL-encoded key)', async () => {
    const p = await createProduct(t, admin);
    const bytes = randomBytes(100);
    const up = await requestUpload(p.id, 'image/webp', bytes.length);
    const key = `products/${p.id}/${up.imageId}`;
    expect((await put(up.uploadUrl, 'image/webp', bytes)).status).toBe(200);
    const minio = {
      EventName: 's3:ObjectCreated:Put',
      Key: `${s3.bucket}/${key}`,
      Records: [
        {
          eventVersion: '2.0',
          eventSource: 'minio:s3',
          eventName: 's3:ObjectCreated:Put',
          s3: {
            bucket: { name: s3.bucket },
            object: { key: encodeURIComponent(key), size: bytes.length, contentType: 'image/webp' },
          },
        },
      ],
    };
    expect((await notify(minio)).status).toBe(204);
    expect((await imageRow(up.imageId)).status).toBe('ready');
    expect((await t.http.get(`/v1/products/${p.id}`)).body.imageUrl).toBe(
      `${s3.endpoint}/${s3.bucket}/${await servedKey(up.imageId)}`,
    );
  });

  it('the store refuses an expired upload URL', async () => {
    const p = await createProduct(t, admin);
    const clock = t.app.get(Clock);
    // the API signs with its clock: 16 minutes ago, so the 15-minute URL has run out
    const spy = jest.spyOn(clock, 'now').mockReturnValue(new Date(Date.now() - 16 * 60_000));
    let up: Awaited<ReturnType<typeof requestUpload>>;
    try {
      up = await requestUpload(p.id, 'image/png', 10);
    } finally {
      spy.mockRestore();
    }
    expect(Date.parse(up.expiresAt)).toBeLessThan(Date.now());
    const res = await put(up.uploadUrl, 'image/png', randomBytes(10));
    expect(res.status).toBe(403);
    expect(await res.text()).toMatch(/<Code>AccessDenied<\/Code>[\s\S]*Request has expired/);
    // nor by 1,000 empty pairs before its query, past which s3rver's parser saw no signature
    // (and so no expiry) while the gate's still found it
    const padded = up.uploadUrl.replace('?', `?${'&'.repeat(1000)}`);
    expect((await put(padded, 'image/png', randomBytes(10))).status).toBe(403);

    // a notification naming the key anyway: the store has no such object, the image stays pending
    const key = `products/${p.id}/${up.imageId}`;
    expect(
      (
        await notify({
          Records: [
            {
              eventName: 'ObjectCreated:Put',
              s3: { bucket: { name: s3.bucket }, object: { key } },
            },
          ],
        })
      ).status,
    ).toBe(204);
    expect((await imageRow(up.imageId)).status).toBe('pending');
  });

  it('the store refuses a PUT of another Content-Type or Content-Length than was signed', async () => {
    // the gate in front of s3rver computes SigV4 as AWS documents it: its published example
    // ("Authenticating Requests: Using Query Parameters (AWS Signature Version 4)", example GET)
    const secret = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';
    const url =
      '/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request' +
      '&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host' +
      '&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404';
    // (checked at the example's own time: it was signed for a day in 2013)
    const then = Date.parse('2013-05-24T12:00:00Z');
    const check = (method: string, host: string, now = then) =>
      presignedSignatureProblem(method, url, { host }, secret, undefined, now);
    expect(check('GET', 'examplebucket.s3.amazonaws.com')).toBeNull();
    expect(check('PUT', 'examplebucket.s3.amazonaws.com')).toBe('signature does not match');
    expect(check('GET', 'evil.s3.amazonaws.com')).toBe('signature does not match');
    expect(check('GET', 'examplebucket.s3.amazonaws.com', then + 86_400_000)).toBe(
      'Request has expired',
    );

    const p = await createProduct(t, admin);
    const up = await requestUpload(p.id, 'image/png', 64);
    const otherType = await put(up.uploadUrl, 'image/svg+xml', randomBytes(64));
    expect(otherType.status).toBe(403);
    expect(await otherType.text()).toContain('<Code>SignatureDoesNotMatch</Code>');
    const longer = await put(up.uploadUrl, 'image/png', randomBytes(65));
    expect(longer.status).toBe(403);
    expect(await longer.text()).toContain('<Code>SignatureDoesNotMatch</Code>');
    const shorter = await put(up.uploadUrl, 'image/png', randomBytes(63));
    expect(shorter.status).toBe(403);
    // control: the declared type and size are accepted
    expect((await put(up.uploadUrl, 'image/png', randomBytes(64))).status).toBe(200);
  });

  it('confirms the object with HeadObject: another size or type than declared leaves the image pending', async () => {
    const p = await createProduct(t, admin);
    const up = await requestUpload(p.id, 'image/jpeg', 500);
    const key = `products/${p.id}/${up.imageId}`;
    // written past the pre-signed URL (e.g. by another holder of store credentials)
    const direct = new S3Client({
      endpoint: s3.endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: {
        accessKeyId: s3.env.STORAGE_ACCESS_KEY_ID,
        secretAccessKey: s3.env.STORAGE_SECRET_ACCESS_KEY,
      },
    });
    try {
      const n = s3.events.length;
      await direct.send(
        new PutObjectCommand({
          Bucket: s3.bucket,
          Key: key,
          Body: randomBytes(5000),
          ContentType: 'image/jpeg',
        }),
      );
      expect((await notify(await storeEvent(n + 1))).status).toBe(204);
      expect((await imageRow(up.imageId)).status).toBe('pending');
      await direct.send(
        new PutObjectCommand({
          Bucket: s3.bucket,
          Key: key,
          Body: randomBytes(500),
          ContentType: 'text/html',
        }),
      );
      expect((await notify(await storeEvent(n + 2))).status).toBe(204);
      expect((await imageRow(up.imageId)).status).toBe('pending');
      // control: the declared size and type make it ready
      await direct.send(
        new PutObjectCommand({
          Bucket: s3.bucket,
          Key: key,
          Body: randomBytes(500),
          ContentType: 'image/jpeg',
        }),
      );
      expect((await notify(await storeEvent(n + 3))).status).toBe(204);
      expect((await imageRow(up.imageId)).status).toBe('ready');
    } finally {
      direct.destroy();
    }
  });

  /** A new product's image uploaded through its signed URL with `headers` too; its status once notified. */
  const uploadWith = async (headers: Record<string, string>) => {
    const p = await createProduct(t, admin);
    const bytes = randomBytes(300);
    const up = await requestUpload(p.id, 'image/png', bytes.length);
    const n = s3.events.length;
    const res = await fetch(up.uploadUrl, {
      method: 'PUT',
      headers: { 'content-type': 'image/png', ...headers },
      body: bytes,
    });
    expect(res.status).toBe(200);
    expect((await notify(await storeEvent(n + 1))).status).toBe(204);
    return (await imageRow(up.imageId)).status;
  };

  it('an upload through the signed URL with headers of its own that break the image (gzip, no-store, attachment) is left pending; harmless ones are not', async () => {
    for (const [name, value] of [
      ['content-encoding', 'gzip'],
      ['cache-control', 'no-store'],
      ['cache-control', 'max-age=0, must-revalidate'],
      ['content-disposition', 'attachment; filename="x.html"'],
    ]) {
      // the store takes it (only content-type and content-length are signed); it stays pending
      expect({ name, status: await uploadWith({ [name]: value }) }).toEqual({
        name,
        status: 'pending',
      });
    }
    // control: without them, or with harmless ones (what a store may add by default), it is ready
    for (const headers of [
      {},
      {
        'cache-control': 'public, max-age=3600',
        'content-disposition': 'inline',
        'content-encoding': 'identity',
      },
    ] as Record<string, string>[]) {
      expect({ headers, status: await uploadWith(headers) }).toEqual({ headers, status: 'ready' });
    }
  });

  it('refuses a notification without the right bearer token (400 WEBHOOK_SIGNATURE_INVALID) and changes nothing', async () => {
    const p = await createProduct(t, admin);
    const bytes = randomBytes(32);
    const up = await requestUpload(p.id, 'image/png', bytes.length);
    const n = s3.events.length;
    expect((await put(up.uploadUrl, 'image/png', bytes)).status).toBe(200);
    const event = await storeEvent(n + 1);
    for (const authorization of [
      null,
      'Bearer wrong-token-wrong-token',
      TOKEN,
      `Bearer ${TOKEN}x`,
      `Basic ${TOKEN}`,
      `Bearer\t${TOKEN}`,
    ]) {
      const res = await notify(event, authorization);
      expect([authorization, res.status, res.body.code]).toEqual([
        authorization,
        400,
        'WEBHOOK_SIGNATURE_INVALID',
      ]);
      expect(res.headers.get('content-type')).toContain('application/problem+json');
    }
    expect((await imageRow(up.imageId)).status).toBe('pending');
    // the right token with a body that is no S3 notification: a 400 problem, not a 5xx
    for (const body of [
      { key: 'products/x/y' },
      { Records: [] },
      { Records: [{ eventName: 1 }] },
    ]) {
      const res = await notify(body);
      expect([res.status, res.body.code]).toEqual([400, 'BAD_REQUEST']);
    }
    expect((await imageRow(up.imageId)).status).toBe('pending');
    // control: the same event with the token is accepted, the scheme in any case (RFC 9110 §11.1)
    // and after one or more spaces (RFC 6750 §2.1: 1*SP), as every bearer token is read
    expect((await notify(event, `bearer  ${TOKEN}`)).status).toBe(204);
    expect((await imageRow(up.imageId)).status).toBe('ready');
  });

  it('checks the token before the Idempotency-Key is looked at; a keyed notification is honoured, outside a transaction', async () => {
    const key = `storage-${Date.now()}`;
    const keyed = (body: unknown, authorization: string, k = key) =>
      t.http.request('POST', '/v1/webhooks/storage', undefined, {
        raw: JSON.stringify(body),
        headers: { authorization, 'idempotency-key': k },
      });
    const p = await createProduct(t, admin);
    const up = await requestUpload(p.id, 'image/png', 16);
    const notice = {
      Records: [
        {
          eventName: 'ObjectRemoved:Delete',
          s3: { bucket: { name: s3.bucket }, object: { key: `products/${p.id}/${up.imageId}` } },
        },
      ],
    };
    expect((await keyed(notice, `Bearer ${TOKEN}`)).status).toBe(204);
    const replay = await keyed(notice, `Bearer ${TOKEN}`);
    expect(replay.status).toBe(204);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    const { principal } = (
      await t.db.pool.query(`SELECT principal FROM idempotency_keys WHERE key = $1`, [key])
    ).rows[0];
    const held = `${key}-held`;
    const holder = await holdIdempotencyKey(t.db.pool, principal, held);
    try {
      const refused = await keyed({ Records: [] }, 'Bearer wrong', held);
      expect(refused.status).toBe(400);
      expect(refused.body.code).toBe('WEBHOOK_SIGNATURE_INVALID');
    } finally {
      await holder.release();
    }
  });

  it('a notification whose second record cannot be confirmed (503) still shows the first one at once: the cache is invalidated', async () => {
    const p = await createProduct(t, admin);
    const [a, b] = [
      await requestUpload(p.id, 'image/png', 64),
      await requestUpload(p.id, 'image/png', 64),
    ];
    for (const up of [a, b])
      expect((await put(up.uploadUrl, 'image/png', randomBytes(64))).status).toBe(200);
    expect((await t.http.get(`/v1/products/${p.id}`)).body.imageUrl).toBeNull(); // cached now, without images
    const storage = t.app.get(ObjectStorage);
    const head = storage.head.bind(storage);
    const spy = jest.spyOn(storage, 'head').mockImplementation(async (key: string) => {
      if (key.endsWith(b.imageId)) throw new ObjectStorageUnavailable('the store did not answer');
      return head(key);
    });
    try {
      const record = (imageId: string) => ({
        eventName: 'ObjectCreated:Put',
        s3: { bucket: { name: s3.bucket }, object: { key: `products/${p.id}/${imageId}` } },
      });
      expect((await notify({ Records: [record(a.imageId), record(b.imageId)] })).status).toBe(503);
    } finally {
      spy.mockRestore();
    }
    expect((await imageRow(a.imageId)).status).toBe('ready');
    expect((await t.http.get(`/v1/products/${p.id}`)).body.imageUrl).toBe(
      `${s3.endpoint}/${s3.bucket}/${await servedKey(a.imageId)}`,
    );
  });

  it('acknowledges notifications for keys, buckets or events that are not ours without effect', async () => {
    const p = await createProduct(t, admin);
    const up = await requestUpload(p.id, 'image/png', 16);
    const key = `products/${p.id}/${up.imageId}`;
    const record = (eventName: string, bucket: string, k: string) => ({
      eventName,
      s3: { bucket: { name: bucket }, object: { key: k } },
    });
    const res = await notify({
      Records: [
        record('ObjectRemoved:Delete', s3.bucket, key),
        record('ObjectCreated:Put', 'someone-elses-bucket', key),
        record('ObjectCreated:Put', s3.bucket, 'avatars/me.png'),
        record('ObjectCreated:Put', s3.bucket, '%E0%A4%A'),
      ],
    });
    expect(res.status).toBe(204);
    expect((await imageRow(up.imageId)).status).toBe('pending');
  });

  it('answers 503 while the store cannot be asked, so the store retries; the image stays pending', async () => {
    // a second API instance on the same database whose store is unreachable
    const down = await bootTestApp({
      db: t.db,
      env: { ...s3.env, STORAGE_ENDPOINT: 'http://127.0.0.1:9', STORAGE_WEBHOOK_TOKEN: TOKEN },
    });
    try {
      const p = await createProduct(t, admin);
      const up = await requestUpload(p.id, 'image/png', 16);
      const key = `products/${p.id}/${up.imageId}`;
      const res = await down.http.request('POST', '/v1/webhooks/storage', undefined, {
        raw: JSON.stringify({
          Records: [
            {
              eventName: 'ObjectCreated:Put',
              s3: { bucket: { name: s3.bucket }, object: { key } },
            },
          ],
        }),
        headers: { authorization: `Bearer ${TOKEN}` },
      });
      expect([res.status, res.body.code]).toEqual([503, 'SERVICE_UNAVAILABLE']);
      expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
      expect((await imageRow(up.imageId)).status).toBe('pending');
    } finally {
      await down.close();
    }
  });

  it('answers 503 when the store accepts the connection and never answers (its calls time out), and a keyed retry runs afresh', async () => {
    const held: Socket[] = [];
    const silent = createServer((socket) => void held.push(socket)); // holds every connection, says nothing
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const { port } = silent.address() as AddressInfo;
    const stalled = await bootTestApp({
      db: t.db,
      env: {
        ...s3.env,
        STORAGE_ENDPOINT: `http://127.0.0.1:${port}`,
        STORAGE_WEBHOOK_TOKEN: TOKEN,
      },
    });
    try {
      const p = await createProduct(t, admin);
      const up = await requestUpload(p.id, 'image/png', 16);
      const key = `products/${p.id}/${up.imageId}`;
      const idempotencyKey = newKey();
      const send = () =>
        stalled.http.request('POST', '/v1/webhooks/storage', undefined, {
          raw: JSON.stringify({
            Records: [
              {
                eventName: 'ObjectCreated:Put',
                s3: { bucket: { name: s3.bucket }, object: { key } },
              },
            ],
          }),
          headers: { authorization: `Bearer ${TOKEN}`, 'idempotency-key': idempotencyKey },
        });
      const res = await send();
      expect([res.status, res.body.code]).toEqual([503, 'SERVICE_UNAVAILABLE']);
      // nothing stored for a 5xx, and the key is not left "in use": the retry runs (and times out)
      const again = await send();
      expect([again.status, again.body.code]).toEqual([503, 'SERVICE_UNAVAILABLE']);
      expect((await imageRow(up.imageId)).status).toBe('pending');
    } finally {
      await stalled.close();
      for (const socket of held) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  }, 60_000);

  describe('a ready image is what was checked, whatever its upload URL does next', () => {
    /** GET as a browser's first request would be answered, bytes and headers as sent (no decoding). */
    const fetchRaw = (url: string) =>
      new Promise<{ status: number; headers: IncomingHttpHeaders; body: Buffer }>(
        (resolve, reject) =>
          httpGet(url, (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () =>
              resolve({
                status: res.statusCode!,
                headers: res.headers,
                body: Buffer.concat(chunks),
              }),
            );
          }).on('error', reject),
      );
    const servedAs = (r: { status: number; headers: IncomingHttpHeaders; body: Buffer }) => ({
      status: r.status,
      type: r.headers['content-type'],
      encoding: r.headers['content-encoding'],
      disposition: r.headers['content-disposition'],
      cacheControl: r.headers['cache-control'],
    });
    const harmful = {
      'content-encoding': 'gzip',
      'content-disposition': 'attachment; filename="x.html"',
      'cache-control': 'no-store',
    };
    /** A PUT through the upload URL, and the store's event for it, delivered. */
    const upload = async (url: string, bytes: Buffer, headers: Record<string, string> = {}) => {
      const n = s3.events.length;
      const res = await fetch(url, {
        method: 'PUT',
        headers: { 'content-type': 'image/png', ...headers },
        body: bytes,
      });
      expect(res.status).toBe(200);
      return storeEvent(n + 1);
    };

    /** How a checked PNG copy is served: our type and Cache-Control, nothing else of the upload's. */
    const SERVED_PNG = {
      status: 200,
      type: 'image/png',
      encoding: undefined,
      disposition: undefined,
      cacheControl: 'public, max-age=31536000, immutable',
    };

    it('a second PUT through the same URL after the image is ready changes neither the bytes nor the headers customers are served', async () => {
      const p = await createProduct(t, admin);
      const good = randomBytes(300);
      const up = await requestUpload(p.id, 'image/png', good.length);
      expect((await notify(await upload(up.uploadUrl, good))).status).toBe(204);
      const served = await servedKey(up.imageId);
      const detail = (await t.http.get(`/v1/products/${p.id}`)).body;
      expect(detail.images).toEqual([`${s3.endpoint}/${s3.bucket}/${served}`]);
      const before = await fetchRaw(detail.imageUrl);
      expect(servedAs(before)).toEqual(SERVED_PNG);
      expect(before.body.equals(good)).toBe(true);

      // the reviewer's scenario: within the URL's 15 minutes, other bytes and headers that break it
      const bad = Buffer.alloc(good.length, 0x41);
      expect((await notify(await upload(up.uploadUrl, bad, harmful))).status).toBe(204);
      const after = await fetchRaw(detail.imageUrl);
      expect(servedAs(after)).toEqual(servedAs(before));
      expect(after.body.equals(good)).toBe(true);
      expect(await servedKey(up.imageId)).toBe(served);
      expect((await t.http.get(`/v1/products/${p.id}`)).body.images).toEqual(detail.images);
      // and the second upload, served to no one, is removed once it is told of
      expect(
        (await fetchRaw(`${s3.endpoint}/${s3.bucket}/products/${p.id}/${up.imageId}`)).status,
      ).toBe(404);
    });

    it('the bytes copied are the bytes checked: an upload replaced between the check and the copy is left pending, then made ready as its own notification says', async () => {
      const p = await createProduct(t, admin);
      const first = randomBytes(200);
      const second = randomBytes(200);
      const up = await requestUpload(p.id, 'image/png', first.length);
      const event = await upload(up.uploadUrl, first);
      const client = (t.app.get<ObjectStorage>(ObjectStorage) as unknown as { client: S3Client })
        .client;
      const send = client.send.bind(client) as (command: unknown) => Promise<unknown>;
      let secondEvent: unknown;
      const spy = jest.spyOn(client, 'send').mockImplementation((async (command: unknown) => {
        // after the HeadObject read the first upload's ETag, before the copy: the URL is used again
        if (command instanceof CopyObjectCommand && secondEvent === undefined)
          secondEvent = await upload(up.uploadUrl, second);
        return send(command);
      }) as never);
      try {
        expect((await notify(event)).status).toBe(204);
      } finally {
        spy.mockRestore();
      }
      expect((await imageRow(up.imageId)).status).toBe('pending');
      expect((await notify(secondEvent)).status).toBe(204);
      const served = await fetchRaw((await t.http.get(`/v1/products/${p.id}`)).body.imageUrl);
      expect(served.body.equals(second)).toBe(true);
    });

    it("a crash between the copy and the update leaves the image pending, and the store's retry makes it ready once", async () => {
      const p = await createProduct(t, admin);
      const bytes = randomBytes(128);
      const up = await requestUpload(p.id, 'image/png', bytes.length);
      const event = await upload(up.uploadUrl, bytes);
      const spy = jest
        .spyOn(t.app.get(ImageRepository), 'markReady')
        .mockRejectedValueOnce(new Error('connection terminated'));
      try {
        expect((await notify(event)).status).toBe(500);
      } finally {
        spy.mockRestore();
      }
      expect((await imageRow(up.imageId)).status).toBe('pending');
      // the store retries (here twice at once)
      expect((await Promise.all([notify(event), notify(event)])).map((r) => r.status)).toEqual([
        204, 204,
      ]);
      const served = await servedKey(up.imageId);
      const detail = (await t.http.get(`/v1/products/${p.id}`)).body;
      expect(detail.images).toEqual([`${s3.endpoint}/${s3.bucket}/${served}`]);
      expect((await fetchRaw(detail.imageUrl)).body.equals(bytes)).toBe(true);
    });

    it('an update that fails after the copy leaves that copy noted (it may have committed): retries serve one, and the pass removes the others and the upload', async () => {
      const p = await createProduct(t, admin);
      const bytes = randomBytes(1000);
      const up = await requestUpload(p.id, 'image/png', bytes.length);
      const uploadKey = `products/${p.id}/${up.imageId}`;
      const event = await upload(up.uploadUrl, bytes);
      const spy = jest
        .spyOn(t.app.get(ImageRepository), 'markReady')
        .mockRejectedValue(new Error('lock timeout'));
      try {
        for (let i = 0; i < 3; i++) expect((await notify(event)).status).toBe(500);
      } finally {
        spy.mockRestore();
      }
      const failed = (await objectsUnder(`products/${p.id}/`)).filter((k) => k !== uploadKey);
      expect(failed).toHaveLength(3);
      expect((await notify(event)).status).toBe(204);
      const served = await servedKey(up.imageId);
      expect(await objectsUnder(`products/${p.id}/`)).toEqual([...failed, served].sort());
      await t.db.pool.query(
        `UPDATE product_images SET stray_noted_at = stray_noted_at - interval '2 hours',
                created_at = created_at - interval '2 hours' WHERE id = $1`,
        [up.imageId],
      );
      // the three copies, and the upload (removed already, deleted again once its URL has expired)
      expect(await t.app.get(ImagesService).reconcilePending()).toMatchObject({ strays: 4 });
      expect(await objectsUnder(`products/${p.id}/`)).toEqual([served]);
    });

    it("of confirmations racing past the copy, each loser removes its own copy: the store holds only the winner's", async () => {
      const p = await createProduct(t, admin);
      const bytes = randomBytes(400);
      const up = await requestUpload(p.id, 'image/png', bytes.length);
      const event = await upload(up.uploadUrl, bytes);
      // every confirmation has made its copy before any of them updates the row
      const images = t.app.get(ImageRepository);
      const markReady = images.markReady.bind(images);
      let waiting = 0;
      let release!: () => void;
      const allCopied = new Promise<void>((resolve) => (release = resolve));
      const spy = jest.spyOn(images, 'markReady').mockImplementation(async (...args) => {
        if (++waiting === 3) release();
        await allCopied;
        return markReady(...args);
      });
      try {
        const statuses = (await Promise.all([notify(event), notify(event), notify(event)])).map(
          (r) => r.status,
        );
        expect(statuses).toEqual([204, 204, 204]);
      } finally {
        spy.mockRestore();
      }
      expect(waiting).toBe(3);
      expect(await objectsUnder(`products/${p.id}/`)).toEqual([await servedKey(up.imageId)]);
    });

    it('a copy the store refuses (credentials without what CopyObject needs) is answered 503 and logged as such; the checked upload stays pending, never removed as abandoned', async () => {
      const p = await createProduct(t, admin);
      const bytes = randomBytes(300);
      const up = await requestUpload(p.id, 'image/png', bytes.length);
      const event = await upload(up.uploadUrl, bytes);
      const spy = refuseCommands(CopyObjectCommand);
      const errors = jest.spyOn(Logger.prototype, 'error');
      try {
        // the store retries it (not "the store would not describe it": HeadObject just did)
        expect((await notify(event)).status).toBe(503);
        expect(errors.mock.calls.map((c) => String(c[0]))).toContainEqual(
          expect.stringMatching(/refused to copy .*CopyObject needs/),
        );
        expect((await imageRow(up.imageId)).status).toBe('pending');
        // a week on, the pass still leaves it: the checked upload is not an abandoned one
        await t.db.pool.query(
          `UPDATE product_images SET created_at = created_at - interval '8 days' WHERE id = $1`,
          [up.imageId],
        );
        expect(await t.app.get(ImagesService).reconcilePending()).toMatchObject({
          ready: 0,
          removed: 0,
        });
      } finally {
        spy.mockRestore();
        errors.mockRestore();
      }
      expect((await imageRow(up.imageId)).status).toBe('pending');
      const uploadUrl = `${s3.endpoint}/${s3.bucket}/products/${p.id}/${up.imageId}`;
      expect((await fetchRaw(uploadUrl)).status).toBe(200);
      // the policy put right, the store's retry makes it ready
      expect((await notify(event)).status).toBe(204);
      expect(
        (await fetchRaw(`${s3.endpoint}/${s3.bucket}/${await servedKey(up.imageId)}`)).body.equals(
          bytes,
        ),
      ).toBe(true);
    });

    it('an image an earlier build made ready is still served from its upload key, and a later PUT through its URL moves it to a checked copy, leaving the object pages already handed out name', async () => {
      const p = await createProduct(t, admin);
      const good = randomBytes(256);
      const up = await requestUpload(p.id, 'image/png', good.length);
      const key = `products/${p.id}/${up.imageId}`;
      await upload(up.uploadUrl, good);
      // as the previous build left it: ready, served from the upload's own key
      await t.db.pool.query(
        `UPDATE product_images SET status = 'ready', ready_at = now() WHERE id = $1`,
        [up.imageId],
      );
      await t.db.pool.query(`UPDATE products SET image_url = $2 WHERE id = $1`, [p.id, key]);
      await t.app.get(CatalogCache).invalidate();
      const legacyUrl = `${s3.endpoint}/${s3.bucket}/${key}`;
      const detail = (await t.http.get(`/v1/products/${p.id}`)).body;
      expect([detail.imageUrl, detail.images]).toEqual([legacyUrl, [legacyUrl]]);
      expect((await fetchRaw(legacyUrl)).body.equals(good)).toBe(true);

      const other = randomBytes(256);
      expect((await notify(await upload(up.uploadUrl, other, harmful))).status).toBe(204);
      const served = await servedKey(up.imageId);
      const moved = (await t.http.get(`/v1/products/${p.id}`)).body;
      expect([moved.imageUrl, moved.images]).toEqual([
        `${s3.endpoint}/${s3.bucket}/${served}`,
        [`${s3.endpoint}/${s3.bucket}/${served}`],
      ]);
      const now = await fetchRaw(moved.imageUrl);
      expect(servedAs(now)).toEqual(SERVED_PNG);
      // (the bytes are the URL's last upload, of the signed size and type: what was first checked
      // is gone from the store)
      expect(now.body.equals(other)).toBe(true);
      // a page handed out before the move (cached, or held by a client) still shows an image: the
      // upload's object is left in the store
      expect((await fetchRaw(detail.imageUrl)).status).toBe(200);
    });
  });

  describe('the reconciliation pass (notifications lost, or never configured)', () => {
    const reconcile = () => t.app.get(ImagesService).reconcilePending();
    const age = (imageId: string, interval: string) =>
      t.db.pool.query(
        `UPDATE product_images SET created_at = created_at - $2::interval WHERE id = $1`,
        [imageId, interval],
      );
    /**
     * The store answers HeadObject for the keys `answer` gives a status for with that error — 403,
     * as it answers a key without s3:ListBucket asking for a missing object, or 404 — and the rest
     * as it is. `heads(prefix)`: the HeadObjects asked so far (of keys under `prefix`).
     */
    const failHeads = (answer: (key: string) => 403 | 404 | undefined) => {
      const client = (t.app.get<ObjectStorage>(ObjectStorage) as unknown as { client: S3Client })
        .client;
      const send = client.send.bind(client) as (command: unknown) => Promise<unknown>;
      const asked: string[] = [];
      const spy = jest.spyOn(client, 'send').mockImplementation(((command: unknown) => {
        if (command instanceof HeadObjectCommand) {
          const key = command.input.Key!;
          asked.push(key);
          const status = answer(key);
          if (status !== undefined) {
            return Promise.reject(
              new S3ServiceException({
                name: status === 403 ? 'Forbidden' : 'NotFound',
                $fault: 'client',
                $metadata: { httpStatusCode: status },
                message: status === 403 ? 'Forbidden' : 'Not Found',
              }),
            );
          }
        }
        return send(command);
      }) as never);
      return {
        restore: () => spy.mockRestore(),
        heads: (prefix = '') => asked.filter((key) => key.startsWith(prefix)).length,
      };
    };
    /** The store refuses to describe (403) the objects whose key `refused` picks. */
    const refuseHeads = (refused: (key: string) => boolean) =>
      failHeads((key) => (refused(key) ? 403 : undefined));

    it('an uploaded image whose notification never came is made ready by the pass (after a grace period), once', async () => {
      const p = await createProduct(t, admin);
      const bytes = randomBytes(512);
      const up = await requestUpload(p.id, 'image/png', bytes.length);
      expect((await put(up.uploadUrl, 'image/png', bytes)).status).toBe(200);
      expect((await t.http.get(`/v1/products/${p.id}`)).body.imageUrl).toBeNull(); // cached, no image

      // within the grace period the store's notification is waited for
      expect(await reconcile()).toEqual({ ready: 0, removed: 0, moved: 0, strays: 0 });
      expect((await imageRow(up.imageId)).status).toBe('pending');

      await age(up.imageId, '3 minutes');
      expect(await reconcile()).toEqual({ ready: 1, removed: 0, moved: 0, strays: 0 });
      expect((await imageRow(up.imageId)).status).toBe('ready');
      // visible at once: the catalog cache was invalidated
      const key = `products/${p.id}/${up.imageId}`;
      expect((await t.http.get(`/v1/products/${p.id}`)).body.imageUrl).toBe(
        `${s3.endpoint}/${s3.bucket}/${await servedKey(up.imageId)}`,
      );
      // again, or a late notification: nothing changes
      expect(await reconcile()).toEqual({ ready: 0, removed: 0, moved: 0, strays: 0 });
      const late = await notify({
        Records: [
          { eventName: 'ObjectCreated:Put', s3: { bucket: { name: s3.bucket }, object: { key } } },
        ],
      });
      expect(late.status).toBe(204);
    });

    it('an upload that never happened stays pending while its URL could still be used, then is removed', async () => {
      const p = await createProduct(t, admin);
      const up = await requestUpload(p.id, 'image/png', 64);
      await age(up.imageId, '30 minutes'); // URL expired, but a PUT begun in time may still be arriving
      expect(await reconcile()).toEqual({ ready: 0, removed: 0, moved: 0, strays: 0 });
      expect((await imageRow(up.imageId)).status).toBe('pending');
      await age(up.imageId, '2 hours');
      expect(await reconcile()).toEqual({ ready: 0, removed: 1, moved: 0, strays: 0 });
      expect(await imageRow(up.imageId)).toBeUndefined();
      expect((await t.http.get(`/v1/products/${p.id}`)).body.images).toEqual([]);
    });

    it('an abandoned upload the checks refused is removed from the store with its row — after the store removed it (its DELETE failing once, the row stays for the next pass)', async () => {
      const p = await createProduct(t, admin);
      const up = await requestUpload(p.id, 'image/png', 300);
      const n = s3.events.length;
      const res = await fetch(up.uploadUrl, {
        method: 'PUT',
        headers: { 'content-type': 'image/png', 'content-encoding': 'gzip' },
        body: randomBytes(300),
      });
      expect(res.status).toBe(200);
      expect((await notify(await storeEvent(n + 1))).status).toBe(204);
      expect((await imageRow(up.imageId)).status).toBe('pending'); // refused: a header breaks it
      const object = `${s3.endpoint}/${s3.bucket}/products/${p.id}/${up.imageId}`;
      expect((await fetch(object)).status).toBe(200);
      await age(up.imageId, '2 hours');
      // the store's DELETE fails once (a blink): before, the row was removed first, and the
      // object stayed with nothing naming it — never removed, fetchable at its key for good
      const client = (t.app.get<ObjectStorage>(ObjectStorage) as unknown as { client: S3Client })
        .client;
      const send = client.send.bind(client) as (command: unknown) => Promise<unknown>;
      let deletes = 0;
      const blink = jest
        .spyOn(client, 'send')
        .mockImplementation(((command: unknown) =>
          command instanceof DeleteObjectCommand && deletes++ === 0
            ? Promise.reject(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }))
            : send(command)) as never);
      try {
        expect(await reconcile()).toEqual({ ready: 0, removed: 0, moved: 0, strays: 0 });
      } finally {
        blink.mockRestore();
      }
      expect((await imageRow(up.imageId)).status).toBe('pending');
      expect(await reconcile()).toEqual({ ready: 0, removed: 1, moved: 0, strays: 0 });
      expect(await imageRow(up.imageId)).toBeUndefined();
      // (it stayed in the bucket for good, fetchable at its key)
      expect((await fetch(object)).status).toBe(404);
    });

    it("an abandoned upload whose DELETE the store refuses (no s3:DeleteObject) goes all the same, said at error: kept, it would count in the product's images for good", async () => {
      const p = await createProduct(t, admin);
      const up = await requestUpload(p.id, 'image/png', 300);
      const res = await fetch(up.uploadUrl, {
        method: 'PUT',
        headers: { 'content-type': 'image/png', 'content-encoding': 'gzip' },
        body: randomBytes(300),
      });
      expect(res.status).toBe(200);
      await age(up.imageId, '2 hours');
      const refused = refuseCommands(DeleteObjectCommand);
      const errors = jest.spyOn(Logger.prototype, 'error');
      try {
        expect(await reconcile()).toEqual({ ready: 0, removed: 1, moved: 0, strays: 0 });
        expect(
          errors.mock.calls.filter(([line]) => String(line).includes('refuses to remove it')),
        ).toHaveLength(1);
      } finally {
        refused.mockRestore();
        errors.mockRestore();
      }
      expect(await imageRow(up.imageId)).toBeUndefined();
    });

    it('an object the store refuses to describe (403) is left pending; the pass goes on to the others', async () => {
      const p = await createProduct(t, admin);
      const bytes = randomBytes(256);
      // the older image's HEAD is refused (a key without s3:ListBucket asking for a missing object)
      const refused = await requestUpload(p.id, 'image/png', 64);
      const uploaded = await requestUpload(p.id, 'image/png', bytes.length);
      expect((await put(uploaded.uploadUrl, 'image/png', bytes)).status).toBe(200);
      await age(refused.imageId, '4 minutes');
      await age(uploaded.imageId, '3 minutes');
      const store = refuseHeads((key) => key === `products/${p.id}/${refused.imageId}`);
      try {
        expect(await reconcile()).toEqual({ ready: 1, removed: 0, moved: 0, strays: 0 });
      } finally {
        store.restore();
      }
      expect((await imageRow(refused.imageId)).status).toBe('pending');
      expect((await imageRow(uploaded.imageId)).status).toBe('ready');
    });

    it('a notification for an object the store refuses to describe is acknowledged, its image left to the pass; the others in it are confirmed', async () => {
      const p = await createProduct(t, admin);
      const bytes = randomBytes(128);
      const gone = await requestUpload(p.id, 'image/png', 64); // deleted before its notification came
      const uploaded = await requestUpload(p.id, 'image/png', bytes.length);
      expect((await put(uploaded.uploadUrl, 'image/png', bytes)).status).toBe(200);
      const goneKey = `products/${p.id}/${gone.imageId}`;
      const store = refuseHeads((key) => key === goneKey);
      try {
        const res = await notify({
          Records: [goneKey, `products/${p.id}/${uploaded.imageId}`].map((key) => ({
            eventName: 'ObjectCreated:Put',
            s3: { bucket: { name: s3.bucket }, object: { key } },
          })),
        });
        // not a 503: the store would retry it for as long as the object stays gone
        expect(res.status).toBe(204);
      } finally {
        store.restore();
      }
      expect((await imageRow(gone.imageId)).status).toBe('pending');
      expect((await imageRow(uploaded.imageId)).status).toBe('ready');
    });

    it('a store that refuses every object (the key itself) ends the pass after 20 refusals in a row', async () => {
      // (over two products: one holds at most MAX_IMAGES_PER_PRODUCT)
      const products = [await createProduct(t, admin), await createProduct(t, admin)];
      const ups = [];
      for (let i = 0; i < 22; i++)
        ups.push(await requestUpload(products[i % 2].id, 'image/png', 64));
      for (const up of ups) await age(up.imageId, '3 minutes');
      const store = refuseHeads(() => true);
      try {
        expect(await reconcile()).toEqual({ ready: 0, removed: 0, moved: 0, strays: 0 });
      } finally {
        store.restore();
      }
      expect(store.heads()).toBe(20);
      for (const up of ups) expect((await imageRow(up.imageId)).status).toBe('pending');
      await t.db.pool.query(`DELETE FROM product_images WHERE product_id = ANY($1::uuid[])`, [
        products.map((p) => p.id),
      ]);
    });

    it('abandoned uploads the store refuses to describe (a key without s3:ListBucket) do not stall the pass: the uploads behind them are reached, and a week on they are removed', async () => {
      // (over two products: one holds at most MAX_IMAGES_PER_PRODUCT)
      const products = [await createProduct(t, admin), await createProduct(t, admin)];
      const stale: { imageId: string; productId: string }[] = [];
      for (let i = 0; i < 22; i++) {
        const productId = products[i % 2].id;
        stale.push({ ...(await requestUpload(productId, 'image/png', 64)), productId });
      }
      for (const up of stale) await age(up.imageId, '2 hours');
      const bytes = randomBytes(128);
      const uploaded = await requestUpload(products[0].id, 'image/png', bytes.length);
      expect((await put(uploaded.uploadUrl, 'image/png', bytes)).status).toBe(200);
      await age(uploaded.imageId, '3 minutes'); // its notification was lost
      const staleKeys = new Set(stale.map((up) => `products/${up.productId}/${up.imageId}`));
      const store = refuseHeads((key) => staleKeys.has(key));
      try {
        expect(await reconcile()).toEqual({ ready: 1, removed: 0, moved: 0, strays: 0 });
        for (const up of stale) await age(up.imageId, '8 days');
        expect(await reconcile()).toEqual({ ready: 0, removed: 22, moved: 0, strays: 0 });
      } finally {
        store.restore();
      }
      expect((await imageRow(uploaded.imageId)).status).toBe('ready');
      for (const up of stale) expect(await imageRow(up.imageId)).toBeUndefined();
    });

    it("more refused uploads than a pass's pages (2,000) do not hide the ones behind them: the next pass goes on where the last stopped", async () => {
      const p = await createProduct(t, admin);
      // 2,100 abandoned uploads the store refuses to describe (kept a week), oldest first
      await t.db.pool.query(
        `INSERT INTO product_images (id, product_id, storage_key, content_type, size_bytes, status, created_at)
         SELECT id, $1::uuid, 'products/' || $1::text || '/' || id, 'image/png', 64, 'pending', now() - interval '2 hours' - n * interval '1 ms'
           FROM (SELECT gen_random_uuid() AS id, n FROM generate_series(1, 2100) n) s`,
        [p.id],
      );
      const bytes = randomBytes(128);
      // (another product's: this one is past MAX_IMAGES_PER_PRODUCT)
      const other = await createProduct(t, admin);
      const uploaded = await requestUpload(other.id, 'image/png', bytes.length);
      expect((await put(uploaded.uploadUrl, 'image/png', bytes)).status).toBe(200);
      await age(uploaded.imageId, '3 minutes'); // its notification was lost
      const uploadedKey = `products/${other.id}/${uploaded.imageId}`;
      const store = refuseHeads((key) => key !== uploadedKey);
      try {
        expect(await reconcile()).toEqual({ ready: 0, removed: 0, moved: 0, strays: 0 }); // the oldest 2,000
        expect(store.heads()).toBe(2_000);
        expect(await reconcile()).toEqual({ ready: 1, removed: 0, moved: 0, strays: 0 }); // on from there: the rest, and the upload
      } finally {
        store.restore();
      }
      expect((await imageRow(uploaded.imageId)).status).toBe('ready');
      await t.db.pool.query(`DELETE FROM product_images WHERE product_id = $1`, [p.id]);
    });

    /** An image as the previous build left it: ready, served from its upload's own key. */
    const readyOnUploadKey = async (productId: string, bytes: Buffer) => {
      const up = await requestUpload(productId, 'image/png', bytes.length);
      expect((await put(up.uploadUrl, 'image/png', bytes)).status).toBe(200);
      const key = `products/${productId}/${up.imageId}`;
      await t.db.pool.query(
        `UPDATE product_images SET status = 'ready', ready_at = now() WHERE id = $1`,
        [up.imageId],
      );
      await t.db.pool.query(`UPDATE products SET image_url = $2 WHERE id = $1`, [productId, key]);
      await t.app.get(CatalogCache).invalidate();
      return { ...up, key };
    };

    it("an image an earlier build made ready, its URL used again and the notification lost, is moved to a checked copy by the pass: the second PUT's headers are not served", async () => {
      const p = await createProduct(t, admin);
      const good = randomBytes(256);
      const up = await readyOnUploadKey(p.id, good);
      // the URL used again (gzip, attachment): the notification lost, or taken by an instance of
      // the previous build, which ignores notifications for ready images
      const res = await fetch(up.uploadUrl, {
        method: 'PUT',
        headers: {
          'content-type': 'image/png',
          'content-encoding': 'gzip',
          'content-disposition': 'attachment',
        },
        body: Buffer.alloc(256, 0x41),
      });
      expect(res.status).toBe(200);
      await age(up.imageId, '1 day');
      expect(await reconcile()).toEqual({ ready: 0, removed: 0, moved: 1, strays: 0 });
      const served = await servedKey(up.imageId);
      const detail = (await t.http.get(`/v1/products/${p.id}`)).body;
      expect([detail.imageUrl, detail.images]).toEqual([
        `${s3.endpoint}/${s3.bucket}/${served}`,
        [`${s3.endpoint}/${s3.bucket}/${served}`],
      ]);
      const fetched = await fetch(detail.imageUrl);
      expect([
        fetched.headers.get('content-encoding'),
        fetched.headers.get('content-disposition'),
        fetched.headers.get('cache-control'),
      ]).toEqual([null, null, 'public, max-age=31536000, immutable']);
      // once moved, nothing more to do; the upload's object is left for pages that name it
      expect(await reconcile()).toEqual({ ready: 0, removed: 0, moved: 0, strays: 0 });
      expect((await fetch(`${s3.endpoint}/${s3.bucket}/${up.key}`)).status).toBe(200);
    });

    it('an image an earlier build made ready whose notification the store refused to describe (403) is moved by the pass', async () => {
      const p = await createProduct(t, admin);
      const up = await readyOnUploadKey(p.id, randomBytes(128));
      const store = refuseHeads(() => true);
      try {
        const res = await notify({
          Records: [
            {
              eventName: 'ObjectCreated:Put',
              s3: { bucket: { name: s3.bucket }, object: { key: up.key } },
            },
          ],
        });
        expect(res.status).toBe(204); // acknowledged: "left to the reconciliation pass"
      } finally {
        store.restore();
      }
      expect(await reconcile()).toEqual({ ready: 0, removed: 0, moved: 1, strays: 0 });
      await servedKey(up.imageId);
    });

    it("more images on their upload key than a pass's pages (2,000), their objects gone, do not hide the ones behind them: the next pass goes on where the last stopped", async () => {
      const p = await createProduct(t, admin);
      // 2,100 ready images whose objects are gone, older than any other
      await t.db.pool.query(
        `INSERT INTO product_images (id, product_id, storage_key, content_type, size_bytes, status, created_at, ready_at)
         SELECT id, $1::uuid, 'products/' || $1::text || '/' || id, 'image/png', 64, 'ready',
                now() - interval '400 days' - n * interval '1 ms', now() - interval '400 days'
           FROM (SELECT gen_random_uuid() AS id, n FROM generate_series(1, 2100) n) s`,
        [p.id],
      );
      const other = await createProduct(t, admin);
      const up = await readyOnUploadKey(other.id, randomBytes(128));
      const store = failHeads((key) => (key === up.key ? undefined : 404));
      try {
        expect(await reconcile()).toEqual({ ready: 0, removed: 0, moved: 0, strays: 0 }); // the oldest 2,000
        expect(store.heads(`products/${p.id}/`)).toBe(2_000);
        expect(await reconcile()).toEqual({ ready: 0, removed: 0, moved: 1, strays: 0 }); // on from there
      } finally {
        store.restore();
        await t.db.pool.query(`DELETE FROM product_images WHERE product_id = $1`, [p.id]);
      }
      await servedKey(up.imageId);
    });

    it('a store that cannot be asked ends the pass quietly; the image stays pending for the next one', async () => {
      const down = await bootTestApp({
        db: t.db,
        env: { ...s3.env, STORAGE_ENDPOINT: 'http://127.0.0.1:9', STORAGE_WEBHOOK_TOKEN: TOKEN },
      });
      try {
        const p = await createProduct(t, admin);
        const bytes = randomBytes(32);
        const up = await requestUpload(p.id, 'image/png', bytes.length);
        expect((await put(up.uploadUrl, 'image/png', bytes)).status).toBe(200);
        await age(up.imageId, '2 hours');
        expect(await down.app.get(ImagesService).reconcilePending()).toEqual({
          ready: 0,
          removed: 0,
          moved: 0,
          strays: 0,
        });
        expect((await imageRow(up.imageId)).status).toBe('pending');
        expect(await reconcile()).toEqual({ ready: 1, removed: 0, moved: 0, strays: 0 });
      } finally {
        await down.close();
      }
    });
  });

  describe('what a kill or a failed DELETE leaves in the bucket (strays)', () => {
    const reconcile = () => t.app.get(ImagesService).reconcilePending();
    const strayRow = async (imageId: string) =>
      (
        await t.db.pool.query<{ stray_keys: string[] | null }>(
          `SELECT stray_keys FROM product_images WHERE id = $1`,
          [imageId],
        )
      ).rows[0].stray_keys;
    /** As if the strays had been noted `interval` ago (and, with `upload`, its URL signed then). */
    const ageStrays = (imageId: string, interval: string, upload = false) =>
      t.db.pool.query(
        `UPDATE product_images SET stray_noted_at = stray_noted_at - $2::interval,
                created_at = CASE WHEN $3 THEN created_at - $2::interval ELSE created_at END
          WHERE id = $1`,
        [imageId, interval, upload],
      );
    const uploaded = async (productId: string) => {
      const bytes = randomBytes(256);
      const up = await requestUpload(productId, 'image/png', bytes.length);
      const n = s3.events.length;
      expect((await put(up.uploadUrl, 'image/png', bytes)).status).toBe(200);
      return { up, bytes, event: await storeEvent(n + 1) };
    };
    /** The store's event delivered to a process killed between the copy and the ready mark. */
    const killedBeforeReadyMark = async (event: unknown) => {
      const mark = jest
        .spyOn(t.app.get(ImageRepository), 'markReady')
        .mockRejectedValueOnce(new Error('killed'));
      try {
        expect((await notify(event)).status).toBe(500);
      } finally {
        mark.mockRestore();
      }
    };
    const fetchBytes = async (key: string) => {
      const res = await fetch(`${s3.endpoint}/${s3.bucket}/${key}`);
      return { status: res.status, bytes: Buffer.from(await res.arrayBuffer()) };
    };

    it('a process killed between the copy and the ready mark: its copy is noted on the row, the retry serves another, and an hour on the pass removes the first — the bucket holds only what is served', async () => {
      const p = await createProduct(t, admin);
      const { up, event } = await uploaded(p.id);
      const uploadKey = `products/${p.id}/${up.imageId}`;
      await killedBeforeReadyMark(event);
      const [left] = (await objectsUnder(`products/${p.id}/`)).filter((k) => k !== uploadKey);
      expect(left).toMatch(/\.png$/);
      expect(await strayRow(up.imageId)).toEqual([left]);

      expect((await notify(event)).status).toBe(204);
      const served = await servedKey(up.imageId);
      expect(await objectsUnder(`products/${p.id}/`)).toEqual([left, served].sort());
      expect(await strayRow(up.imageId)).toEqual([left, uploadKey]);
      // within the hour (a confirmation may still be making it): left as it is
      expect(await reconcile()).toMatchObject({ strays: 0 });
      await ageStrays(up.imageId, '61 minutes');
      expect(await reconcile()).toMatchObject({ strays: 1 });
      expect(await objectsUnder(`products/${p.id}/`)).toEqual([served]);
      // the upload's key stays noted while its URL (and a PUT begun in time) can still write it
      expect(await strayRow(up.imageId)).toEqual([uploadKey]);
      await ageStrays(up.imageId, '2 hours', true);
      expect(await reconcile()).toMatchObject({ strays: 1 });
      expect(await strayRow(up.imageId)).toBeNull();
      expect((await t.http.get(`/v1/products/${p.id}`)).body.images).toEqual([
        `${s3.endpoint}/${s3.bucket}/${served}`,
      ]);
      expect(await reconcile()).toMatchObject({ strays: 0 });
    });

    it('a ready mark that committed but whose answer was lost (thrown): its copy is served, never removed — the retry changes nothing', async () => {
      const p = await createProduct(t, admin);
      const { up, bytes, event } = await uploaded(p.id);
      const images = t.app.get(ImageRepository);
      const markReady = images.markReady.bind(images);
      const mark = jest.spyOn(images, 'markReady').mockImplementationOnce(async (...args) => {
        await markReady(...args);
        throw new Error('Connection terminated: the COMMIT outcome is unknown');
      });
      try {
        expect((await notify(event)).status).toBe(500);
      } finally {
        mark.mockRestore();
      }
      const served = await servedKey(up.imageId);
      expect(await fetchBytes(served)).toEqual({ status: 200, bytes });
      expect((await notify(event)).status).toBe(204);
      await ageStrays(up.imageId, '2 hours', true);
      await reconcile();
      expect(await objectsUnder(`products/${p.id}/`)).toEqual([served]);
      expect(await fetchBytes(served)).toEqual({ status: 200, bytes });
      expect(await strayRow(up.imageId)).toBeNull();
    });

    it('a copy made though the store answered otherwise (a retried CopyObject told 404 or 412) is removed with its note', async () => {
      const p = await createProduct(t, admin);
      const { up, event } = await uploaded(p.id);
      const storage = t.app.get(ObjectStorage);
      const copy = storage.copyForServing.bind(storage);
      const spy = jest.spyOn(storage, 'copyForServing').mockImplementationOnce(async (...args) => {
        await copy(...args);
        return 'changed';
      });
      try {
        expect((await notify(event)).status).toBe(204);
      } finally {
        spy.mockRestore();
      }
      expect([(await imageRow(up.imageId)).status, await strayRow(up.imageId)]).toEqual([
        'pending',
        null,
      ]);
      expect(await objectsUnder(`products/${p.id}/`)).toEqual([`products/${p.id}/${up.imageId}`]);
    });

    it('the upload of an image made ready whose DELETE failed stays noted, and the pass removes it once its URL has expired — a store down, or a kill, in the middle of that leaves it named', async () => {
      const p = await createProduct(t, admin);
      const { up, event } = await uploaded(p.id);
      const uploadKey = `products/${p.id}/${up.imageId}`;
      const storage = t.app.get(ObjectStorage);
      const remove = jest
        .spyOn(storage, 'delete')
        .mockRejectedValueOnce(new ObjectStorageUnavailable(new Error('connect ECONNREFUSED')));
      try {
        expect((await notify(event)).status).toBe(204);
      } finally {
        remove.mockRestore();
      }
      const served = await servedKey(up.imageId);
      expect(await objectsUnder(`products/${p.id}/`)).toEqual([uploadKey, served].sort());
      expect(await strayRow(up.imageId)).toEqual([uploadKey]);
      await ageStrays(up.imageId, '2 hours', true);
      // a store that cannot be asked: the key is left taken (named), the pass ends quietly
      const down = jest
        .spyOn(storage, 'delete')
        .mockRejectedValue(new ObjectStorageUnavailable(new Error('connect ECONNREFUSED')));
      try {
        expect(await reconcile()).toMatchObject({ strays: 0 });
      } finally {
        down.mockRestore();
      }
      expect(await strayRow(up.imageId)).toEqual([`~${uploadKey}`]);
      // a worker killed between the DELETE and the row's update: still named
      const killed = jest.spyOn(storage, 'delete').mockImplementationOnce(async () => {
        throw new Error('killed');
      });
      try {
        await expect(reconcile()).rejects.toThrow('killed');
      } finally {
        killed.mockRestore();
      }
      expect(await strayRow(up.imageId)).toEqual([`~${uploadKey}`]);
      expect(await reconcile()).toMatchObject({ strays: 1 });
      expect(await objectsUnder(`products/${p.id}/`)).toEqual([served]);
      expect(await strayRow(up.imageId)).toBeNull();
    });

    it('a PUT through the URL of a ready image whose notification is lost is removed by the pass once the URL has expired', async () => {
      const p = await createProduct(t, admin);
      const { up, bytes, event } = await uploaded(p.id);
      const uploadKey = `products/${p.id}/${up.imageId}`;
      expect((await notify(event)).status).toBe(204);
      const served = await servedKey(up.imageId);
      expect((await put(up.uploadUrl, 'image/png', bytes)).status).toBe(200); // its event lost
      expect(await objectsUnder(`products/${p.id}/`)).toEqual([uploadKey, served].sort());
      await ageStrays(up.imageId, '2 hours');
      expect(await reconcile()).toMatchObject({ strays: 0 }); // its URL could still write it
      await ageStrays(up.imageId, '2 hours', true);
      expect(await reconcile()).toMatchObject({ strays: 1 });
      expect(await objectsUnder(`products/${p.id}/`)).toEqual([served]);
    });

    it('a copy the pass has taken is never served: the ready mark needs its copy noted as it was', async () => {
      const p = await createProduct(t, admin);
      const up = await requestUpload(p.id, 'image/png', 16);
      const key = `products/${p.id}/${up.imageId}`;
      const images = t.app.get(ImageRepository);
      expect(await images.noteStray(up.imageId, `${key}.late.png`, new Date())).toBe(true);
      expect(await images.takeStray(up.imageId, `${key}.late.png`)).toBe(true);
      expect(await images.markReady(key, `${key}.late.png`, new Date())).toBeNull();
      expect([(await imageRow(up.imageId)).status, await strayRow(up.imageId)]).toEqual([
        'pending',
        [`~${key}.late.png`],
      ]);
    });

    it('an abandoned pending image is removed only after its strays: the row is what names them', async () => {
      const p = await createProduct(t, admin);
      const { up, event } = await uploaded(p.id);
      const uploadKey = `products/${p.id}/${up.imageId}`;
      await killedBeforeReadyMark(event);
      const [copy] = await strayRow(up.imageId).then((keys) => keys ?? []);
      // the upload gone from the store (its lifecycle rule, a hand), the image abandoned
      await t.app.get(ObjectStorage).delete(uploadKey);
      await ageStrays(up.imageId, '3 hours', true);
      expect(await reconcile()).toMatchObject({ removed: 0, strays: 1 });
      expect(await objectsUnder(`products/${p.id}/`)).toEqual([]);
      expect(await strayRow(up.imageId)).toBeNull();
      expect(copy).toMatch(/\.png$/);
      expect(await reconcile()).toMatchObject({ removed: 1, strays: 0 });
      expect(await imageRow(up.imageId)).toBeUndefined();
    });

    it('an image takes 32 notes at most: past them no copy is made until the pass has removed them', async () => {
      const p = await createProduct(t, admin);
      const { up, event } = await uploaded(p.id);
      const key = `products/${p.id}/${up.imageId}`;
      const images = t.app.get(ImageRepository);
      for (let i = 0; i < 32; i++)
        expect(await images.noteStray(up.imageId, `${key}.${i}.png`, new Date())).toBe(true);
      expect(await images.noteStray(up.imageId, `${key}.32.png`, new Date())).toBe(false);
      // a key noted already is noted still
      expect(await images.noteStray(up.imageId, `${key}.0.png`, new Date())).toBe(true);
      expect(await strayRow(up.imageId)).toHaveLength(32);
      expect((await notify(event)).status).toBe(204);
      expect([(await imageRow(up.imageId)).status, await objectsUnder(`${key}.`)]).toEqual([
        'pending',
        [],
      ]);
      await ageStrays(up.imageId, '2 hours');
      await t.db.pool.query(
        `UPDATE product_images SET created_at = created_at - interval '3 minutes' WHERE id = $1`,
        [up.imageId],
      );
      // the pass removes the 32 (the image still refused a note before that), the next makes it ready
      expect(await reconcile()).toMatchObject({ ready: 0, strays: 32 });
      expect(await reconcile()).toMatchObject({ ready: 1, strays: 0 });
      expect(await objectsUnder(`products/${p.id}/`)).toEqual([await servedKey(up.imageId)]);
      expect(await strayRow(up.imageId)).toEqual([key]);
    });
  });
});
