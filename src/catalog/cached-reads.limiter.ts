/** One client's fixed window. */
interface Window {
  hits: number;
  resetAt: number;
}

export interface LocalLimitState {
  blocked: boolean;
  remaining: number;
  /** Seconds until the window resets (≥ 1). */
  resetSeconds: number;
}

/**
 * A per-process fixed-window counter per client, for the cached-read fast path where a Redis
 * round trip per request would cost more than the cache hit itself (cached-reads.hook.ts).
 * The same numbers as the per-IP `default` policy, and the same window semantics as its Redis
 * counter (the window starts with the client's first request). Memory is bounded: at most
 * `maxClients` windows. When full (after dropping expired ones, at most once a second):
 * - `'untracked'` (a counter with another behind it): a new client is not tracked here — `take`
 *   answers null and the request goes the normal way, through the Redis-backed guard. A full
 *   table never resets anybody's counter.
 * - `'evict'` (a counter nothing else backs: the only limit there is): the client seen least
 *   recently leaves the table for the new one. Untracked, a new client was never refused: 10,000
 *   one-off clients a minute (one IPv6 /48's /64s) left every other client without a limit. An
 *   evicted client starts again from nothing — it had sent nothing while 10,000 others came:
 *   resetting a counter costs a client more requests than it gains.
 */
export class LocalRateLimiter {
  private readonly clients = new Map<string, Window>();
  private lastSweep = Number.NEGATIVE_INFINITY;

  constructor(
    readonly limit: number,
    readonly windowMs: number,
    private readonly whenFull: 'untracked' | 'evict' = 'untracked',
    private readonly maxClients = 10_000,
  ) {}

  /** Counts one request of `client`; null when the client cannot be tracked (table full). */
  take(client: string, now: number): LocalLimitState | null {
    let window = this.clients.get(client);
    if (window) this.seen(client, window);
    if (!window || window.resetAt <= now) {
      if (!window && this.clients.size >= this.maxClients && !this.sweep(now)) {
        if (this.whenFull === 'untracked') return null;
        this.clients.delete(this.clients.keys().next().value!);
      }
      window = { hits: 0, resetAt: now + this.windowMs };
      this.clients.set(client, window);
    }
    window.hits++;
    return {
      blocked: window.hits > this.limit,
      remaining: Math.max(0, this.limit - window.hits),
      resetSeconds: Math.max(1, Math.ceil((window.resetAt - now) / 1000)),
    };
  }

  /**
   * The client's window as it stands, without counting a request; null when not tracked. A
   * request all the same (a client refused unread, never counted again, is still sending).
   */
  peek(client: string, now: number): LocalLimitState | null {
    const window = this.clients.get(client);
    if (!window || window.resetAt <= now) return null;
    this.seen(client, window);
    return {
      blocked: window.hits > this.limit,
      remaining: Math.max(0, this.limit - window.hits),
      resetSeconds: Math.max(1, Math.ceil((window.resetAt - now) / 1000)),
    };
  }

  /** `'evict'`: the client moves to the end of the Map's order, its clients' latest requests'. */
  private seen(client: string, window: Window): void {
    if (this.whenFull !== 'evict') return;
    this.clients.delete(client);
    this.clients.set(client, window);
  }

  get size(): number {
    return this.clients.size;
  }

  /** Drops expired windows; true if that made room. */
  private sweep(now: number): boolean {
    if (now - this.lastSweep < 1000) return false;
    this.lastSweep = now;
    for (const [client, window] of this.clients) {
      if (window.resetAt <= now) this.clients.delete(client);
    }
    return this.clients.size < this.maxClients;
  }
}
