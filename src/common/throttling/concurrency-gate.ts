import { DomainError } from '../errors/domain-error';

/** Slots the priority lane gets in a row while the other lane waits, before one goes to the other. */
const PRIORITY_TURNS = 3;

/** Retry-After of the 503 a full or too-slow gate answers. */
export const GATE_BUSY_RETRY_AFTER_SECONDS = 1;

export interface ConcurrencyGateOptions {
  /** Tasks running at once. */
  concurrency: number;
  /** Callers allowed to wait for a slot (in each lane); one more is refused at once. */
  maxQueued: number;
  /** A caller still waiting after this long is refused (and leaves the queue). */
  maxWaitMs: number;
  /**
   * Places (running or waiting, both lanes) one holder may have at once — a caller naming a
   * `holder` beyond it is refused at once — so that no one holder fills the queue for all.
   */
  placesPerHolder?: number;
}

/**
 * A share of the slots a caller's task counts against while it runs: at most `limit` tasks of
 * `holder` hold a slot at once. One over it waits its turn (never refused for it), and others
 * behind it in the queue go first.
 */
export interface SlotCap {
  holder: string;
  limit: number;
}

/** A caller waiting for a slot: woken with one, its caps already counted. */
interface Waiter {
  wake: () => void;
  caps: readonly SlotCap[];
}

/**
 * A semaphore with a bounded queue for expensive CPU work (argon2): at most `concurrency`
 * tasks run, at most `maxQueued` callers wait (first come, first served), none waits longer
 * than `maxWaitMs`. A refused caller gets 503 SERVICE_UNAVAILABLE with Retry-After, so a burst
 * is answered quickly instead of piling up work on libuv's thread pool for everyone.
 *
 * A caller may ask for the priority lane (`{ priority: true }`): its own queue of `maxQueued`,
 * served ahead of the other — PRIORITY_TURNS slots in a row at most while the other has callers
 * waiting, then one of those — so a priority lane kept full (anyone can be "known" to an account
 * of their own) slows the rest down but cannot shut them out. The password hasher gives it to
 * sign-ins from the account owner's own clients, so strangers filling the queue with guesses at
 * random emails (each a full argon2 run) cannot keep the owner from signing in.
 *
 * A caller may name caps on the slots its holders' tasks hold (`caps`, SlotCap): only tasks
 * holding a slot count against them, and a task over one waits — skipped by the slots that come
 * free until one of its holders' tasks ends — rather than being refused: the catalog's builds
 * cap each client's and each IPv6 /48's, and counting those still waiting refused a /48's plain
 * listing pages whenever the database was slow (review).
 */
export class ConcurrencyGate {
  private running = 0;
  private readonly waiting: Waiter[] = [];
  private readonly priorityWaiting: Waiter[] = [];
  /** Slots handed to the priority lane in a row while the other lane had callers waiting. */
  private priorityStreak = 0;
  /** Places held per holder (placesPerHolder), running or waiting. */
  private readonly held = new Map<string, number>();
  /** Slots held now per holder of a SlotCap. */
  private readonly holding = new Map<string, number>();

  constructor(private readonly options: ConcurrencyGateOptions) {
    if (options.concurrency < 1) throw new Error('ConcurrencyGate: concurrency must be >= 1');
  }

  /** Tasks running now (for tests and metrics). */
  get active(): number {
    return this.running;
  }

  /** Callers waiting for a slot now (both lanes). */
  get queued(): number {
    return this.waiting.length + this.priorityWaiting.length;
  }

  async run<T>(
    task: () => Promise<T>,
    options: { priority?: boolean; holder?: string; caps?: readonly SlotCap[] } = {},
  ): Promise<T> {
    const { holder, caps = [] } = options;
    const limit = this.options.placesPerHolder;
    if (holder === undefined || limit === undefined)
      return this.runInTurn(task, caps, options.priority);
    const held = this.held.get(holder) ?? 0;
    if (held >= limit) throw busy();
    this.held.set(holder, held + 1);
    try {
      return await this.runInTurn(task, caps, options.priority);
    } finally {
      const left = this.held.get(holder)! - 1;
      if (left > 0) this.held.set(holder, left);
      else this.held.delete(holder);
    }
  }

  private async runInTurn<T>(
    task: () => Promise<T>,
    caps: readonly SlotCap[],
    priority?: boolean,
  ): Promise<T> {
    await this.acquire(priority ? this.priorityWaiting : this.waiting, caps);
    try {
      return await task();
    } finally {
      this.release(caps);
    }
  }

  private acquire(lane: Waiter[], caps: readonly SlotCap[]): Promise<void> {
    if (this.running < this.options.concurrency && this.underCaps(caps)) {
      this.running += 1;
      this.hold(caps, 1);
      return Promise.resolve();
    }
    if (lane.length >= this.options.maxQueued) return Promise.reject(busy());
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        wake: () => {
          clearTimeout(timer);
          resolve(); // its slot already counted (`running`) by the release that woke it
        },
        caps,
      };
      const timer = setTimeout(() => {
        const at = lane.indexOf(waiter);
        if (at >= 0) lane.splice(at, 1);
        reject(busy());
      }, this.options.maxWaitMs);
      timer.unref();
      lane.push(waiter);
    });
  }

  private release(caps: readonly SlotCap[]): void {
    this.hold(caps, -1);
    this.running -= 1;
    // the slot freed — and any other free one: a release can free the caps of more than one
    // waiter (a build counts against its client's and its /48's), and a waiter over a cap may
    // have waited while slots were free; each left waiting then waited for another release
    while (this.running < this.options.concurrency) {
      const next = this.nextWaiter();
      if (!next) return;
      this.running += 1;
      this.hold(next.caps, 1);
      next.wake();
    }
  }

  /** The next caller to take a slot: the first of a lane whose caps leave it room (lane order kept). */
  private nextWaiter(): Waiter | undefined {
    const ordinary = this.waiting.findIndex((w) => this.underCaps(w.caps));
    const priority = this.priorityWaiting.findIndex((w) => this.underCaps(w.caps));
    const ordinaryTurn = ordinary >= 0 && (this.priorityStreak >= PRIORITY_TURNS || priority < 0);
    const next = ordinaryTurn
      ? this.waiting.splice(ordinary, 1)[0]
      : priority >= 0
        ? this.priorityWaiting.splice(priority, 1)[0]
        : undefined;
    this.priorityStreak =
      ordinaryTurn || !this.waiting.some((w) => this.underCaps(w.caps))
        ? 0
        : this.priorityStreak + 1;
    return next;
  }

  /** Whether a task with these caps would wait for one of its holders' tasks to end (SlotCap). */
  overCaps(caps: readonly SlotCap[]): boolean {
    return !this.underCaps(caps);
  }

  private underCaps(caps: readonly SlotCap[]): boolean {
    return caps.every((cap) => (this.holding.get(cap.holder) ?? 0) < cap.limit);
  }

  private hold(caps: readonly SlotCap[], by: 1 | -1): void {
    for (const { holder } of caps) {
      const now = (this.holding.get(holder) ?? 0) + by;
      if (now > 0) this.holding.set(holder, now);
      else this.holding.delete(holder);
    }
  }
}

/** The message of a gate's refusal (503 SERVICE_UNAVAILABLE): full, nothing was run. */
export const GATE_BUSY = 'The server is busy; retry shortly.';

function busy(): DomainError {
  return new DomainError('SERVICE_UNAVAILABLE', GATE_BUSY, {
    headers: { 'Retry-After': String(GATE_BUSY_RETRY_AFTER_SECONDS) },
  });
}
