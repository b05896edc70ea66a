import { DomainError } from '../common/errors/domain-error';
import { ipTracker, networkTracker } from '../common/throttling/rate-limit.policies';

/** One client's fixed window of build time. */
interface Spent {
  ms: number;
  resetAt: number;
  /** Its builds begun and not finished (waiting for a slot or running). */
  begun: number;
}

/** Who pays for a build: the client (its per-IP tracker, IPv6 per /64) and an IPv6 client's /48. */
export interface Payer {
  client: string;
  network?: string;
}

/** The payer of a build a request from `ip` begins. */
export function payerOf(ip: string): Payer {
  return { client: ipTracker(ip), network: networkTracker(ip) };
}

/** Reports a build's own time (ms) once it has ended; later calls are ignored. */
export type Spend = (elapsedMs: number) => void;

export interface BuildBudgetOptions {
  /** Build time (ms, measured from the gate's slot to the build's end) a client may use per window. */
  budgetMs: number;
  windowMs: number;
  /**
   * Builds of one client begun and not finished at once, waiting for a slot or running (how many
   * of them hold a slot at once is the build gate's cap: SlotCap).
   */
  begun: number;
  /** Clients tracked at once (beyond, the oldest window with no build under way makes room: `admit`). */
  maxClients?: number;
  /** Whom the refusal names (`client` by default; `network`: the client's IPv6 /48). */
  who?: 'client' | 'network';
  now?: () => number;
}

/** The refusals, by whom they name: its build time spent, or too many of its builds begun. */
const REFUSAL = {
  client: {
    spent:
      'Too much catalog build time (searches, pages not cached) used by this client; try again later.',
    begun: 'Too many catalog reads being built at once for this client; try again later.',
  },
  network: {
    spent:
      "Too much catalog build time (searches, pages not cached) used by this client's network; try again later.",
    begun: "Too many catalog reads being built at once for this client's network; try again later.",
  },
};

/**
 * What a client's catalog misses may cost this process's database, by the time their builds take,
 * not by their number. A listing that searches (`q`) scores every product it matches: a query
 * that matches them all (a word in every description, or nothing but negations) took 180–430 ms
 * of PostgreSQL's CPU per request on 20,000 products, and, as each `q` is a URL of its own, every
 * one was a miss — one address at the per-IP rate (`default`, 300 a minute) kept 1.4 of the two
 * cores busy and three made checkouts wait seconds (cost review). A client whose builds took more
 * than `budgetMs` in the window, or that has `begun` builds under way, is refused 429 before
 * another one begins; a page already being built is joined at no cost (CatalogCache#getOrBuild),
 * so a client over its budget never refuses anyone else's read. Ordinary misses (a page of the
 * listing, 2–20 ms) are far below it; a shopper's searches on a large catalog too (~60 a minute
 * at 85 ms each). Per process, like the cached reads' counter; bounded memory (maxClients windows;
 * when full, expired ones are dropped, at most once a second, and if none has expired the window
 * begun longest ago with no build under way is dropped for the new client's).
 *
 * A full table once left a new client unlimited here: a host with a routed IPv6 /48 filled it
 * with its /64s and every client after them, IPv4 ones included, built at the per-IP rate alone
 * (cost review). Dropping the oldest window instead refuses no one and leaves no one uncounted;
 * what it forgives is that window's spend — of the window that began first, so the one nearest
 * its end (all of them began within the last window: older ones have expired), and only once
 * `maxClients` newer ones have begun after it. A client's IPv6 /48 has a budget of its own
 * besides (CatalogCache), so one host's /64s are bounded together whatever this table holds.
 */
export class BuildBudget {
  private readonly clients = new Map<string, Spent>();
  private lastSweep = Number.NEGATIVE_INFINITY;
  private readonly now: () => number;

  constructor(private readonly options: BuildBudgetOptions) {
    this.now = options.now ?? (() => performance.now());
  }

  /**
   * Admits one build of `client` (429 RATE_LIMITED with Retry-After if over its budget or its
   * builds begun); the answer is to be called with the build's own time once it has ended.
   */
  admit(client: string): Spend {
    const now = this.now();
    let spent = this.clients.get(client);
    if (spent && spent.resetAt <= now && spent.begun === 0) {
      this.clients.delete(client);
      spent = undefined;
    }
    if (!spent) {
      if (this.clients.size >= this.maxClients && !this.sweep(now) && !this.dropOldest()) {
        return () => undefined; // every window has a build under way: none to drop
      }
      spent = { ms: 0, resetAt: now + this.options.windowMs, begun: 0 };
      this.clients.set(client, spent);
    } else if (spent.resetAt <= now) {
      spent.ms = 0;
      spent.resetAt = now + this.options.windowMs;
      // last in the table again: its order is the order the windows began (dropOldest)
      this.clients.delete(client);
      this.clients.set(client, spent);
    }
    const refusal = REFUSAL[this.options.who ?? 'client'];
    if (spent.ms >= this.options.budgetMs) {
      const seconds = Math.max(1, Math.ceil((spent.resetAt - now) / 1000));
      throw new DomainError('RATE_LIMITED', refusal.spent, {
        headers: { 'Retry-After': String(seconds) },
      });
    }
    if (spent.begun >= this.options.begun) {
      throw new DomainError('RATE_LIMITED', refusal.begun, { headers: { 'Retry-After': '1' } });
    }
    const window = spent;
    window.begun++;
    let ended = false;
    return (elapsedMs) => {
      if (ended) return;
      ended = true;
      window.begun--;
      window.ms += elapsedMs;
    };
  }

  get size(): number {
    return this.clients.size;
  }

  private get maxClients(): number {
    return this.options.maxClients ?? 10_000;
  }

  /** Drops the window begun longest ago with no build under way; true if there was one. */
  private dropOldest(): boolean {
    for (const [client, spent] of this.clients) {
      if (spent.begun > 0) continue;
      this.clients.delete(client);
      return true;
    }
    return false;
  }

  /** Drops expired windows with no build under way; true if that made room. */
  private sweep(now: number): boolean {
    if (now - this.lastSweep < 1000) return false;
    this.lastSweep = now;
    for (const [client, spent] of this.clients) {
      if (spent.resetAt <= now && spent.begun === 0) this.clients.delete(client);
    }
    return this.clients.size < this.maxClients;
  }
}
