import { DomainError } from '../errors/domain-error';
import { stateHeaderItem } from '../throttling/rate-limit.policies';

/** The name a client's refusal gives its limit (RateLimit-Policy). */
const IN_FLIGHT_POLICY = 'bodies-in-flight';

/**
 * The memory request bodies hold while they arrive: bytes of unfinished bodies per client and in
 * all, in this process. A client holding `clientLimit` is refused 429 for its next chunk, all
 * together holding `totalLimit` a 503 (both with Retry-After, the connection closed after the
 * answer); a body's bytes are given back once it has arrived whole (it is parsed at once) or its
 * connection has gone.
 */
export class InFlightBodies {
  private readonly perClient = new Map<string, number>();
  private total = 0;

  constructor(
    private readonly clientLimit: number,
    private readonly totalLimit: number,
    private readonly what = 'request bodies',
  ) {}

  /** Holds `bytes` more for `client`; the refusal when that would pass a limit (nothing held then). */
  take(client: string, bytes: number): DomainError | null {
    const mine = this.perClient.get(client) ?? 0;
    if (mine + bytes > this.clientLimit) {
      // (a 429 names its limit, as API.md asks of every one: bytes a client may have arriving at
      // once — the IETF draft's quota unit "content-bytes" — none left, for about a second)
      return new DomainError('RATE_LIMITED', `Too many ${this.what} in flight; retry later.`, {
        headers: {
          'Retry-After': '1',
          'RateLimit-Policy': `"${IN_FLIGHT_POLICY}";q=${this.clientLimit};qu="content-bytes"`,
          RateLimit: stateHeaderItem(IN_FLIGHT_POLICY, 0, 1),
        },
      });
    }
    if (this.total + bytes > this.totalLimit) {
      return new DomainError(
        'SERVICE_UNAVAILABLE',
        `Too many ${this.what} in flight; retry later.`,
        { headers: { 'Retry-After': '1' } },
      );
    }
    this.perClient.set(client, mine + bytes);
    this.total += bytes;
    return null;
  }

  give(client: string, bytes: number): void {
    if (bytes <= 0) return;
    const left = (this.perClient.get(client) ?? 0) - bytes;
    if (left > 0) this.perClient.set(client, left);
    else this.perClient.delete(client);
    this.total = Math.max(0, this.total - bytes);
  }
}
