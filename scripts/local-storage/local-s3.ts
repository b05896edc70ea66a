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

type Headers = Record<string, string | string[] | undefined>;

/** What a SigV4 signature covers, read off a request (its query or its Authorization header). */
interface SignedParts {
  signature: string;
  signedHeaders: string;
  credential: string;
  date: string;
  payloadHash: string;
  /** The query parameter left out of the canonical query (the query signature itself). */
  unsignedParam?: string;
}

/**
 * Recomputes a request's SigV4 signature (AWS "Authenticating Requests": query parameters or
 * the Authorization header) as received, from the AWS specification, not from the SDK. Null
 * when it matches and names `accessKeyId`, else why not. The payload hash is taken as declared
 * (the body is not read here).
 */
function signatureProblem(
  method: string,
  rawUrl: string,
  headers: Headers,
  parts: SignedParts,
  accessKeyId: string,
  secretAccessKey: string,
): string | null {
  const [keyId, ...scopeParts] = parts.credential.split('/');
  if (keyId !== accessKeyId || scopeParts.length !== 4) return 'unknown access key';
  const scope = scopeParts.join('/');
  const url = new URL(rawUrl, 'http://placeholder');
  const canonicalQuery = [...url.searchParams.entries()]
    .filter(([k]) => k !== parts.unsignedParam)
    .map(([k, v]) => [rfc3986(k), rfc3986(v)])
    .sort(([a, av], [b, bv]) => (a === b ? (av < bv ? -1 : 1) : a < b ? -1 : 1))
    .map(([k, v]) => `${k}=${v}`)
    .join('&');
  const canonicalHeaders = parts.signedHeaders
    .split(';')
    .map((n) => {
      const v = headers[n];
      return `${n}:${(Array.isArray(v) ? v.join(',') : (v ?? '')).trim().replace(/\s+/g, ' ')}\n`;
    })
    .join('');
  // S3 paths are signed as sent (segments already URI-encoded once, never twice, never
  // normalized: the path s3rver acts on is the one signed)
  const canonicalRequest = [
    method,
    rawUrl.split('?')[0],
    canonicalQuery,
    canonicalHeaders,
    parts.signedHeaders,
    parts.payloadHash,
  ].join('\n');
  const stringToSign = [
    'AWS4-HMAC-SHA256',
    parts.date,
    scope,
    createHash('sha256').update(canonicalRequest).digest('hex'),
  ].join('\n');
  const [day, region, service] = scopeParts;
  const key = hmac(
    hmac(hmac(hmac(`AWS4${secretAccessKey}`, day), region), service),
    'aws4_request',
  );
  const expected = hmac(key, stringToSign);
  const provided = Buffer.from(parts.signature, 'hex');
  return provided.length === expected.length && timingSafeEqual(provided, expected)
    ? null
    : 'signature does not match';
}

const header = (headers: Headers, name: string): string | undefined => {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
};

/** `20261203T101500Z` (SigV4's X-Amz-Date) as epoch ms; NaN when it is not one. */
const amzDate = (value: string): number => {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(value);
  return m ? Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]) : NaN;
};

/**
 * A pre-signed request's query signature (X-Amz-Signature …): null when it matches, has not
 * expired and every `x-amz-*` header sent is signed (S3: "headers present in the request which
 * were not signed" — an unsigned `x-amz-copy-source` turned an upload URL into a copy of another
 * object), else why not.
 */
export function presignedSignatureProblem(
  method: string,
  rawUrl: string,
  headers: Headers,
  secretAccessKey: string,
  accessKeyId?: string,
  now = Date.now(),
): string | null {
  const q = new URL(rawUrl, 'http://placeholder').searchParams;
  const [signature, signedHeaders, credential, date, expires] = [
    'X-Amz-Signature',
    'X-Amz-SignedHeaders',
    'X-Amz-Credential',
    'X-Amz-Date',
    'X-Amz-Expires',
  ].map((name) => q.get(name));
  if (!signature || !signedHeaders || !credential || !date || !expires)
    return 'incomplete query authentication';
  const signed = new Set(signedHeaders.split(';'));
  const unsigned = Object.keys(headers).filter(
    (name) => name.startsWith('x-amz-') && !signed.has(name),
  );
  if (unsigned.length > 0)
    return `headers present in the request which were not signed: ${unsigned.join(', ')}`;
  const issued = amzDate(date);
  if (!/^\d{1,6}$/.test(expires) || Number.isNaN(issued)) return 'malformed query authentication';
  if (now > issued + Number(expires) * 1000) return 'Request has expired';
  const parts = {
    signature,
    signedHeaders,
    credential,
    date,
    payloadHash: 'UNSIGNED-PAYLOAD',
    unsignedParam: 'X-Amz-Signature',
  };
  return signatureProblem(
    method,
    rawUrl,
    headers,
    parts,
    accessKeyId ?? credential.split('/')[0],
    secretAccessKey,
  );
}

/**
 * A request line the gate and s3rver would read differently, refused before any check: a path
 * with dot segments, encoded slashes, dots or backslashes, or empty segments (s3rver decodes a
 * key such as `..%2F..%2Fx` and joins it onto its folder), or a query with empty or repeated
 * parameters (its parser counts empty pairs against a limit, past which it saw no signature).
 */
function requestLineProblem(rawUrl: string): string | null {
  const [path, query = ''] = rawUrl.split(/\?(.*)/s);
  if (!path.startsWith('/') || /(^|\/)\.{1,2}(\/|$)|%2f|%2e|%5c|\\|\/\//i.test(path))
    return 'a path the store does not take';
  if (query === '') return null;
  const names = query.split('&').map((pair) => pair.split('=')[0]);
  if (names.some((n) => n === '') || new Set(names).size !== names.length)
    return 'a query with empty or repeated parameters';
  return null;
}

const AUTHORIZATION =
  /^AWS4-HMAC-SHA256 Credential=([^,\s]+),\s*SignedHeaders=([^,\s]+),\s*Signature=([0-9a-f]+)$/;

/** An SDK call's header signature (Authorization: AWS4-HMAC-SHA256 …): null when it matches, else why not. */
function headerSignatureProblem(
  method: string,
  rawUrl: string,
  headers: Headers,
  accessKeyId: string,
  secretAccessKey: string,
): string | null {
  const match = AUTHORIZATION.exec(header(headers, 'authorization') ?? '');
  const date = header(headers, 'x-amz-date');
  const payloadHash = header(headers, 'x-amz-content-sha256');
  if (!match || !date || !payloadHash) return 'incomplete header authentication';
  const [, credential, signedHeaders, signature] = match;
  return signatureProblem(
    method,
    rawUrl,
    headers,
    { signature, signedHeaders, credential, date, payloadHash },
    accessKeyId,
    secretAccessKey,
  );
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
 * behind a small gate that verifies SigV4 signatures, which s3rver 3 does not (its v4
 * "calculation is unimplemented"): a PUT with another Content-Type or Content-Length than the
 * URL was signed for is refused with 403 SignatureDoesNotMatch, as MinIO, R2 and S3 refuse it,
 * and so is any request not signed with this store's key, by query (unexpired, every `x-amz-*`
 * header signed) or header, but an object's read (the images' public URLs: not a listing); a
 * path or query the gate and s3rver would read differently is refused; a browser's CORS
 * preflight is answered.
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
    const method = req.method ?? 'GET';
    const origin = header(req.headers, 'origin');
    // a browser's upload (an admin page on another origin): its preflight carries the pre-signed
    // URL but no signature of its own; uploads still need one, reads are the public images
    if (method === 'OPTIONS') {
      req.resume();
      res.writeHead(origin ? 204 : 403, {
        ...(origin
          ? {
              'access-control-allow-origin': origin,
              'access-control-allow-methods': 'GET, HEAD, PUT',
              'access-control-allow-headers':
                header(req.headers, 'access-control-request-headers') ?? 'content-type',
              'access-control-max-age': '600',
              vary: 'origin',
            }
          : {}),
      });
      res.end();
      return;
    }
    // What a private bucket takes, as MinIO, R2 and S3 do: reads by anyone (the images' public
    // URLs), anything else only signed by this store's key — a pre-signed URL (query) or an SDK
    // call (header). s3rver alone takes an unsigned PUT, DELETE or form POST from any local
    // process, or any web page the developer has open.
    // (an object's read: a key under the bucket — not a listing, which would show every upload)
    const readingObject = (method === 'GET' || method === 'HEAD') && /^\/[^/]+\/[^?]+/.test(url);
    const problem =
      requestLineProblem(url) ??
      (url.includes('X-Amz-Signature=')
        ? presignedSignatureProblem(method, url, req.headers, secretAccessKey, accessKeyId)
        : req.headers.authorization !== undefined
          ? headerSignatureProblem(method, url, req.headers, accessKeyId, secretAccessKey)
          : readingObject
            ? null
            : "anonymous requests are refused but an object's read");
    if (problem) {
      req.resume();
      s3Error(
        res,
        403,
        /^(signature does not match|incomplete|malformed|unknown access key)/.test(problem)
          ? 'SignatureDoesNotMatch'
          : 'AccessDenied',
        problem,
      );
      return;
    }
    const ifMatch = header(req.headers, 'x-amz-copy-source-if-match');
    if (method === 'PUT' && header(req.headers, 'x-amz-copy-source') && ifMatch !== undefined) {
      copyIfMatch(req, res, url, ifMatch);
      return;
    }
    const upstream = httpRequest(
      { host: '127.0.0.1', port: inner.port, method, path: url, headers: req.headers },
      (up) => {
        res.writeHead(up.statusCode ?? 502, {
          ...up.headers,
          ...(origin
            ? {
                'access-control-allow-origin': origin,
                'access-control-expose-headers': 'etag',
                vary: 'origin',
              }
            : {}),
        });
        up.pipe(res);
      },
    );
    upstream.on('error', () => s3Error(res, 502, 'BadGateway', 'local s3rver unreachable'));
    req.pipe(upstream);
  });
  /**
   * A copy with `x-amz-copy-source-if-match`, which s3rver ignores (it copies whatever the source
   * holds): S3, MinIO and R2 refuse it with 412 PreconditionFailed when the source's ETag is not
   * the one named. s3rver copies, and its answer names the copy's ETag (the MD5 of the bytes it
   * copied, as the source's is for a single PUT): when that is not the one named, the copy is
   * removed and the answer is 412 — the destination never keeps other bytes than those named.
   */
  const copyIfMatch = (req: IncomingMessage, res: ServerResponse, url: string, ifMatch: string) => {
    const unquote = (etag: string) => etag.replace(/&quot;|"/g, '').trim();
    const upstream = httpRequest(
      { host: '127.0.0.1', port: inner.port, method: 'PUT', path: url, headers: req.headers },
      (up) => {
        const chunks: Buffer[] = [];
        up.on('data', (c: Buffer) => chunks.push(c));
        up.on('end', () => {
          const body = Buffer.concat(chunks);
          const copied = /<ETag>([^<]*)<\/ETag>/.exec(body.toString('utf8'))?.[1];
          if (
            up.statusCode !== 200 ||
            (copied !== undefined && unquote(copied) === unquote(ifMatch))
          ) {
            res.writeHead(up.statusCode ?? 502, up.headers);
            res.end(body);
            return;
          }
          const removal = httpRequest(
            { host: '127.0.0.1', port: inner.port, method: 'DELETE', path: url.split('?')[0] },
            (gone) => {
              gone.resume();
              gone.on('end', () =>
                s3Error(
                  res,
                  412,
                  'PreconditionFailed',
                  'At least one of the pre-conditions you specified did not hold',
                ),
              );
            },
          );
          removal.on('error', () => s3Error(res, 502, 'BadGateway', 'local s3rver unreachable'));
          removal.end();
        });
      },
    );
    upstream.on('error', () => s3Error(res, 502, 'BadGateway', 'local s3rver unreachable'));
    req.pipe(upstream);
  };

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
