import { Injectable } from '@nestjs/common';
import { Clock } from '../common/time/clock';
import { IdempotencyRepository } from './idempotency.repository';

/** An in-progress record this old whose key nobody holds was left by a request that is gone. */
const ABANDONED_AFTER_MS = 10 * 60 * 1000;

@Injectable()
export class IdempotencyService {
  constructor(
    private readonly records: IdempotencyRepository,
    private readonly clock: Clock,
  ) {}

  /**
   * Removes records past their 24 h expiry, and in-progress records left behind by requests that
   * are gone (scheduled in the worker).
   */
  async purgeExpired(): Promise<number> {
    let total = 0;
    for (;;) {
      const now = this.clock.now();
      const removed =
        (await this.records.purgeExpired(now)) +
        (await this.records.purgeAbandoned(new Date(now.getTime() - ABANDONED_AFTER_MS)));
      total += removed;
      if (removed === 0) return total;
    }
  }
}
