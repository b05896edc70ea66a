/** Every HTTP exchange of the drill, recorded with its timing (the evidence the invariants read). */
export interface Exchange {
  seq: number;
  label: string;
  flow: number | null;
  api: number;
  method: string;
  path: string;
  key?: string;
  /** HTTP status, or 0 when no answer came (connection refused/reset, timeout). */
  status: number;
  code?: string;
  error?: string;
  replayed: boolean;
  /** ms since the drill's t0. */
  start: number;
  end: number;
  body: any;
  retryAfter?: number;
}

export interface Send {
  label: string;
  flow?: number | null;
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  path: string;
  token?: string;
  key?: string;
  json?: unknown;
  raw?: string;
  headers?: Record<string, string>;
  timeoutMs?: number;
}

export class Recorder {
  readonly exchanges: Exchange[] = [];
  readonly t0 = Date.now();

  constructor(private readonly apiUrls: () => string[]) {}

  now(): number {
    return Date.now() - this.t0;
  }

  async send(api: number, s: Send): Promise<Exchange> {
    const headers: Record<string, string> = { ...(s.headers ?? {}) };
    if (s.token) headers.authorization = `Bearer ${s.token}`;
    if (s.key) headers['idempotency-key'] = s.key;
    let body: string | undefined;
    if (s.raw !== undefined) body = s.raw;
    else if (s.json !== undefined) body = JSON.stringify(s.json);
    if (body !== undefined) headers['content-type'] ??= 'application/json';
    const start = this.now();
    const ex: Exchange = {
      seq: this.exchanges.length,
      label: s.label,
      flow: s.flow ?? null,
      api,
      method: s.method,
      path: s.path,
      key: s.key,
      status: 0,
      replayed: false,
      start,
      end: start,
      body: undefined,
    };
    this.exchanges.push(ex);
    try {
      const res = await fetch(`${this.apiUrls()[api]}${s.path}`, {
        method: s.method,
        headers,
        body,
        signal: AbortSignal.timeout(s.timeoutMs ?? 30_000),
      });
      const text = await res.text();
      ex.status = res.status;
      ex.replayed = res.headers.get('idempotent-replayed') === 'true';
      const ra = res.headers.get('retry-after');
      if (ra) ex.retryAfter = Number(ra);
      try {
        ex.body = text ? JSON.parse(text) : undefined;
      } catch {
        ex.body = text;
      }
      if (ex.body && typeof ex.body === 'object' && typeof ex.body.code === 'string')
        ex.code = ex.body.code;
    } catch (e) {
      const err = e as Error & { cause?: { code?: string } };
      ex.error = err.name === 'TimeoutError' ? 'timeout' : (err.cause?.code ?? err.message);
    }
    ex.end = this.now();
    return ex;
  }
}

/** An answer a client can act on: anything but a 5xx, no answer, or "key in use, retry". */
export function definite(ex: Exchange): boolean {
  return ex.status !== 0 && ex.status < 500 && ex.code !== 'IDEMPOTENCY_KEY_IN_USE';
}
