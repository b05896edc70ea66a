import { DomainError } from '../common/errors/domain-error';

/** One client's fixed window of build time. */
interface Spent {
  ms: number;
  resetAt: number;
  /** Its builds begun and not finished (waiting for a slot or running). */
  running: number;
}

/** Reports a build's own time (ms) once it has ended; later calls are ignored. */
export type Spend = (elapsedMs: number) => void;

export interface BuildBudgetOptions {
  /** Build time (ms, measured from the gate's slot to the build's end) a client may use per window. */
  budgetMs: number;
  windowMs: number;
  /** Builds of one client begun and not finished at once. */
  concurrent: number;
  /** Clients tracked at once (beyond, a new client is not limited here: see `admit`). */
  maxClients?: number;
  now?: () => number;
}

/**
 * What a client's catalog misses may cost this process's database, by the time their builds take,
 * not by their number. A listing that searches (`q`) scores every product it matches: a query
 * that matches them all (a word in every description, or nothing but negations) took 180–430 ms
 * of PostgreSQL's CPU per request on 20,000 products, and, as each `q` is a URL of its own, every
 * one was a miss — one address at the per-IP rate (`default`, 300 a minute) kept 1.4 of the two
 * cores busy and three made checkouts wait seconds (cost review). A client whose builds took more
 * than `budgetMs` in the window, or that has `concurrent` builds under way, is refused 429 before
 * another one begins; a page already being built is joined at no cost (CatalogCache#getOrBuild),
 * so a client over its budget never refuses anyone else's read. Ordinary misses (a page of the
 * listing, 2–20 ms) are far below it; a shopper's searches on a large catalog too (~60 a minute
 * at 85 ms each). Per process, like the cached reads' counter; bounded memory (maxClients windows;
 * when full, expired ones are dropped, at most once a second, and a new client is not limited
 * here — the per-IP `default` policy still is).
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
   * concurrent builds); the answer is to be called with the build's own time once it has ended.
   */
  admit(client: string): Spend {
    const now = this.now();
    let spent = this.clients.get(client);
    if (spent && spent.resetAt <= now && spent.running === 0) {
      this.clients.delete(client);
      spent = undefined;
    }
    if (!spent) {
      if (this.clients.size >= (this.options.maxClients ?? 10_000) && !this.sweep(now)) {
        return () => undefined;
      }
      spent = { ms: 0, resetAt: now + this.options.windowMs, running: 0 };
      this.clients.set(client, spent);
    } else if (spent.resetAt <= now) {
      spent.ms = 0;
      spent.resetAt = now + this.options.windowMs;
    }
    if (spent.ms >= this.options.budgetMs || spent.running >= this.options.concurrent) {
      const seconds =
        spent.ms >= this.options.budgetMs
          ? Math.max(1, Math.ceil((spent.resetAt - now) / 1000))
          : 1;
      throw new DomainError(
        'RATE_LIMITED',
        'Too many costly catalog reads (searches) from this client; try again later.',
        { headers: { 'Retry-After': String(seconds) } },
      );
    }
    const window = spent;
    window.running++;
    let ended = false;
    return (elapsedMs) => {
      if (ended) return;
      ended = true;
      window.running--;
      window.ms += elapsedMs;
    };
  }

  get size(): number {
    return this.clients.size;
  }

  /** Drops expired windows with no build under way; true if that made room. */
  private sweep(now: number): boolean {
    if (now - this.lastSweep < 1000) return false;
    this.lastSweep = now;
    for (const [client, spent] of this.clients) {
      if (spent.resetAt <= now && spent.running === 0) this.clients.delete(client);
    }
    return this.clients.size < (this.options.maxClients ?? 10_000);
  }
}
