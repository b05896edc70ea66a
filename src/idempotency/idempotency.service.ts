import { Injectable } from '@nestjs/common';
import { TurnBatch } from '../common/turn-batch';
import { drainBatches } from '../database/batched-delete';
import { IdempotencyRepository } from './idempotency.repository';

/** An in-progress record this old whose key nobody holds was left by a request that is gone. */
const ABANDONED_AFTER_MS = 10 * 60 * 1000;
/** A key-in-use read slower than this counts as "in use" (the caller takes the normal path). */
const KEY_READ_TIMEOUT_MS = 250;
/**
 * Pairs per key-in-use statement: each one holds an advisory lock until the statement ends, and
 * PostgreSQL's lock table is shared by the whole server (64 × max_connections entries by default).
 */
const KEY_READ_MAX_BATCH = 256;
/**
 * Askers waiting at once beyond which more are answered "in use" at once: while a statement hangs
 * (a database that stopped answering), the ones waiting behind it are not kept without bound.
 */
const KEY_READ_MAX_WAITING = 4_096;

interface KeyAsk {
  principal: string;
  key: string;
  /** The asker stopped waiting (KEY_READ_TIMEOUT_MS) and took the normal path: not to be asked for. */
  gaveUp: boolean;
  /** In a statement that has its connection: the asker waits for its answer (up to KEY_READ_SENT_TIMEOUT_MS). */
  sent: boolean;
}

/**
 * How long an asker whose pair is in a statement already running waits for its answer: giving up
 * sooner would send the request down the normal path while the statement still holds the pair's
 * lock, and its claim would answer 409 IDEMPOTENCY_KEY_IN_USE to a first request.
 */
const KEY_READ_SENT_TIMEOUT_MS = 2_000;

@Injectable()
export class IdempotencyService {
  /** The key-in-use reads, one statement for all callers waiting (TurnBatch, one at a time). */
  private readonly keyReads: TurnBatch<KeyAsk, boolean>;
  /** Asks whose statement has not answered yet (given up or not). */
  private keyAsksWaiting = 0;

  constructor(private readonly records: IdempotencyRepository) {
    this.keyReads = new TurnBatch(
      async (asks) => {
        // (no timeout here: the next statement waits until this one has ended — at most one per
        // process, so its locks are bounded; the askers' own timeout is in keyInUse)
        if (asks.every((a) => a.gaveUp)) return asks.map(() => true); // nobody left to ask for
        const inUse = await this.records.keysInUse(() => {
          const asked = asks.filter((a) => !a.gaveUp);
          for (const a of asked) a.sent = true;
          return asked;
        });
        return asks.map((a) => inUse.has(`${a.principal}\n${a.key}`));
      },
      () => true,
      { oneAtATime: true, maxBatch: KEY_READ_MAX_BATCH },
    );
  }

  /**
   * Whether a request with this principal and key could be answered from, or collide with,
   * what the key already holds: true when a request with it is running right now, or it has a
   * live record (a completed response to replay, on any route, or a request in progress outside
   * one transaction) — and, on any doubt (the database slow or down), true. False means a
   * request with the key would run afresh.
   *
   * The reads of concurrent callers share one statement, one at a time (a caller waits at most
   * for the statement in flight, then its own); each reflects everything committed before the
   * call was made.
   */
  keyInUse(principal: string, key: string): Promise<boolean> {
    if (this.keyAsksWaiting >= KEY_READ_MAX_WAITING) return Promise.resolve(true);
    const ask: KeyAsk = { principal, key, gaveUp: false, sent: false };
    this.keyAsksWaiting++;
    return new Promise((resolve) => {
      // slower than KEY_READ_TIMEOUT_MS (the pool busy, the database slow): "in use", and the
      // request takes the normal path — whose claim must not then find the key locked by this
      // question, sent late: an ask given up before its statement has a connection is left out,
      // and one already in a running statement waits for it (its lock ends with it)
      let timer = setTimeout(() => {
        if (!ask.sent) {
          ask.gaveUp = true;
          resolve(true);
          return;
        }
        timer = setTimeout(() => resolve(true), KEY_READ_SENT_TIMEOUT_MS - KEY_READ_TIMEOUT_MS);
      }, KEY_READ_TIMEOUT_MS);
      void this.keyReads.ask(ask).then((inUse) => {
        this.keyAsksWaiting--;
        clearTimeout(timer);
        resolve(inUse);
      });
    });
  }

  /**
   * Removes records past their 24 h expiry, and in-progress records left behind by requests that
   * are gone (scheduled in the worker).
   */
  async purgeExpired(): Promise<number> {
    // one cutoff for the whole run: records go on expiring while it runs (tens a second the day
    // after a sale), and a cutoff taken afresh for every batch kept finding some — the hourly
    // job ran on for as long as the sale had, holding the worker's one maintenance slot
    // (the database's clock, as every claim judges expiry by: a worker's clock minutes fast
    // deleted records still live, and a retry then ran its request twice)
    const now = await this.records.databaseNow();
    const expired = await drainBatches(() => this.records.purgeExpired(now));
    // then the bodies no key can still need: each lives as long as its latest key
    await drainBatches(() => this.records.purgeBodies(now));
    const abandonedBefore = new Date(now.getTime() - ABANDONED_AFTER_MS);
    return expired + (await drainBatches(() => this.records.purgeAbandoned(abandonedBefore)));
  }
}
