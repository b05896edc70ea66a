import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { IncomingMessage, ServerResponse, createServer, request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import S3rver from 's3rver';
import { DUMMY_ACCOUNT } from 's3rver/lib/models/account';

/** The environment that points the API at this store (STORAGE_*). */
interface LocalS3Env extends Record<string, string> {
  STORAGE_ENDPOINT: string;
  STORAGE_BUCKET: string;
  STORAGE_REGION: string;
  STORAGE_FORCE_PATH_STYLE: string;
  STORAGE_ACCESS_KEY_ID: string;
  STORAGE_SECRET_ACCESS_KEY: string;
}

export interface LocalS3 {
  /** The store's URL (the SigV4 gate in front of s3rver). */
  endpoint: string;
  bucket: string;
  env: LocalS3Env;
  /** Every S3 event notification the store emitted, in order (`Records[].s3.object.key`). */
  events: unknown[];
  /** Resolves once at least `n` events were emitted. */
  waitForEvents(n: number, timeoutMs?: number): Promise<unknown[]>;
  close(): Promise<void>;
}

const rfc3986 = (s: string) =>
  encodeURIComponent(s).replace(
    /[!'()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );

const hmac = (key: Buffer | string, data: string) =>
  createHmac('sha256', key).update(data, 'utf8').digest();

/**
 * Recomputes the SigV4 query-string signature (AWS "Authenticating Requests: Using Query
 * Parameters") of a pre-signed request as received, from the AWS specification, not from the
 * SDK. Null when it matches, else why not.
 */
export function presignedSignatureProblem(
  method: string,
  rawUrl: string,
  headers: Record<string, string | string[] | undefined>,
  secretAccessKey: string,
): string | null {
  const url = new URL(rawUrl, 'http://placeholder');
  const q = url.searchParams;
  const given = q.get('X-Amz-Signature');
  const signedHeaders = q.get('X-Amz-SignedHeaders');
  const credential = q.get('X-Amz-Credential');
  const date = q.get('X-Amz-Date');
  if (!given || !signedHeaders || !credential || !date) return 'incomplete query authentication';
  const scope = credential.split('/').slice(1).join('/');
  const canonicalQuery = [...q.entries()]
    .filter(([k]) => k !== 'X-Amz-Signature')
    .map(([k, v]) => [rfc3986(k), rfc3986(v)])
    .sort(([a, av], [b, bv]) => (a === b ? (av < bv ? -1 : 1) : a < b ? -1 : 1))
    .map(([k, v]) => `${k}=${v}`)
    .join('&');
  const names = signedHeaders.split(';');
  const canonicalHeaders = names
    .map((n) => {
      const v = headers[n];
      return `${n}:${(Array.isArray(v) ? v.join(',') : (v ?? '')).trim().replace(/\s+/g, ' ')}\n`;
    })
    .join('');
  // S3 paths are signed as sent (segments already URI-encoded once, never twice)
  const canonicalRequest = [
    method,
    url.pathname,
    canonicalQuery,
    canonicalHeaders,
    signedHeaders,
    'UNSIGNED-PAYLOAD',
  ].join('\n');
  const stringToSign = [
    'AWS4-HMAC-SHA256',
    date,
    scope,
    createHash('sha256').update(canonicalRequest).digest('hex'),
  ].join('\n');
  const [day, region, service] = scope.split('/');
  const key = hmac(
    hmac(hmac(hmac(`AWS4${secretAccessKey}`, day), region), service),
    'aws4_request',
  );
  const expected = hmac(key, stringToSign);
  const provided = Buffer.from(given, 'hex');
  return provided.length === expected.length && timingSafeEqual(provided, expected)
    ? null
    : 'signature does not match';
}

function s3Error(res: ServerResponse, status: number, code: string, message: string): void {
  res.writeHead(status, { 'content-type': 'application/xml' });
  res.end(
    `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message></Error>`,
  );
}

export interface LocalS3Options {
  bucket?: string;
  /** Where the gate listens: a random port on 127.0.0.1 unless given. */
  port?: number;
  /** Where the objects are kept (and stay): a temporary folder, removed on close, unless given. */
  directory?: string;
  /** The key pair the store accepts: a random one unless given. */
  accessKeyId?: string;
  secretAccessKey?: string;
  /** Called with each S3 event notification; without it they are kept in `events`. */
  onEvent?: (event: unknown) => void;
}

/**
 * A local S3-compatible store (the tests' store, and `npm start`'s in development:
 * scripts/local-storage.ts): s3rver (an npm implementation of the S3 API; it
 * checks access keys and the expiry of pre-signed URLs and emits S3 event notifications)
 * behind a small gate that verifies SigV4 query signatures, which s3rver 3 does not
 * (its v4 "calculation is unimplemented"), so a PUT with another Content-Type or
 * Content-Length than the URL was signed for is refused with 403 SignatureDoesNotMatch, as
 * MinIO, R2 and S3 refuse it. Header-signed SDK calls (CreateBucket, HeadObject) pass through.
 */
export async function startLocalS3(options: LocalS3Options = {}): Promise<LocalS3> {
  const bucket = options.bucket ?? 'shop-images';
  const directory = options.directory ?? mkdtempSync(join(tmpdir(), 'shop-s3-'));
  const accessKeyId = options.accessKeyId ?? `test-${randomBytes(6).toString('hex')}`;
  const secretAccessKey = options.secretAccessKey ?? randomBytes(20).toString('hex');
  DUMMY_ACCOUNT.createKeyPair(accessKeyId, secretAccessKey);

  const s3rver = new S3rver({
    address: '127.0.0.1',
    port: 0,
    directory,
    silent: true,
    configureBuckets: [{ name: bucket, configs: [] }],
  });
  const inner = await s3rver.run();

  const events: unknown[] = [];
  const waiters: (() => void)[] = [];
  s3rver.on('event', (event: unknown) => {
    if (options.onEvent) return options.onEvent(event);
    events.push(event);
    for (const w of waiters.splice(0)) w();
  });

  const gate = createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = req.url ?? '/';
    if (url.includes('X-Amz-Signature=')) {
      const problem = presignedSignatureProblem(
        req.method ?? 'GET',
        url,
        req.headers,
        secretAccessKey,
      );
      if (problem) {
        req.resume();
        s3Error(res, 403, 'SignatureDoesNotMatch', problem);
        return;
      }
    }
    const upstream = httpRequest(
      { host: '127.0.0.1', port: inner.port, method: req.method, path: url, headers: req.headers },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      },
    );
    upstream.on('error', () => s3Error(res, 502, 'BadGateway', 'local s3rver unreachable'));
    req.pipe(upstream);
  });
  try {
    await new Promise<void>((resolve, reject) => {
      gate.once('error', reject);
      gate.listen(options.port ?? 0, '127.0.0.1', resolve);
    });
  } catch (err) {
    await s3rver.close();
    DUMMY_ACCOUNT.revokeAccessKey(accessKeyId);
    throw err;
  }
  const endpoint = `http://127.0.0.1:${(gate.address() as AddressInfo).port}`;

  return {
    endpoint,
    bucket,
    env: {
      STORAGE_ENDPOINT: endpoint,
      STORAGE_BUCKET: bucket,
      STORAGE_REGION: 'us-east-1',
      STORAGE_FORCE_PATH_STYLE: 'true',
      STORAGE_ACCESS_KEY_ID: accessKeyId,
      STORAGE_SECRET_ACCESS_KEY: secretAccessKey,
    },
    events,
    waitForEvents: (n, timeoutMs = 5_000) =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`only ${events.length} of ${n} S3 events within ${timeoutMs} ms`)),
          timeoutMs,
        );
        const check = () => {
          if (events.length >= n) {
            clearTimeout(timer);
            resolve(events.slice());
          } else waiters.push(check);
        };
        check();
      }),
    close: async () => {
      gate.closeAllConnections();
      await new Promise<void>((resolve) => gate.close(() => resolve()));
      await s3rver.close();
      DUMMY_ACCOUNT.revokeAccessKey(accessKeyId);
      if (!options.directory) rmSync(directory, { recursive: true, force: true });
    },
  };
}
