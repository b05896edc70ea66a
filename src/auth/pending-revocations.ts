import { Injectable, Logger, OnApplicationShutdown } from '@nestjs/common';
import { setTimeout as sleep } from 'node:timers/promises';
import { TransactionHost } from '../database/transaction-host';
import { RefreshTokenRepository } from './refresh-token.repository';

/** How long a revocation is retried before it is given up (logged as an error). */
const RETRY_FOR_MS = 10 * 60_000;
const BACKOFF_MAX_MS = 5_000;

/**
 * Revocations that must commit whatever became of the request that decided them. A detected
 * refresh-token reuse is history (the token was spent), but the transaction that revokes its family
 * can fail at its COMMIT (a database blink): the family is then retried here, in a transaction of its
 * own, with backoff (100 ms doubling to 5 s) until it commits — not left live for whoever holds its
 * newest token because the client that tripped the detection never came back. In-process: a process
 * that dies meanwhile loses it (the family's access tokens stay refused by their revocation marks
 * for their lifetime, see RevokedSessions).
 */
@Injectable()
export class PendingRevocations implements OnApplicationShutdown {
  private readonly logger = new Logger(PendingRevocations.name);
  private readonly stop = new AbortController();
  private readonly running = new Set<Promise<void>>();

  constructor(
    private readonly tx: TransactionHost,
    private readonly refreshTokens: RefreshTokenRepository,
  ) {}

  /** Revokes the family in the background until that commits; `revokeFamily` is idempotent. */
  revokeFamily(familyId: string, reason: string, at: Date): void {
    const run = this.retry(familyId, reason, at).finally(() => this.running.delete(run));
    this.running.add(run);
  }

  /** Settles once every pending revocation has committed or been given up (tests, shutdown). */
  async settled(): Promise<void> {
    while (this.running.size > 0) await Promise.allSettled([...this.running]);
  }

  async onApplicationShutdown(): Promise<void> {
    this.stop.abort();
    await this.settled();
  }

  private async retry(familyId: string, reason: string, at: Date): Promise<void> {
    const started = performance.now();
    for (let attempt = 1; ; attempt++) {
      try {
        await this.tx.runOwn(() => this.refreshTokens.revokeFamily(familyId, reason, at));
        this.logger.warn(`session ${familyId}: revocation (${reason}) committed after ${attempt} attempt(s)`);
        return;
      } catch (err) {
        const elapsed = performance.now() - started;
        if (elapsed >= RETRY_FOR_MS || this.stop.signal.aborted) {
          this.logger.error(`session ${familyId}: revocation (${reason}) given up: ${(err as Error).message}`);
          return;
        }
        try {
          await sleep(Math.min(100 * 2 ** (attempt - 1), BACKOFF_MAX_MS), undefined, { signal: this.stop.signal });
        } catch {
          this.logger.error(`session ${familyId}: revocation (${reason}) not committed before shutdown`);
          return;
        }
      }
    }
  }
}
