import { Injectable } from '@nestjs/common';
import { Clock } from '../common/time/clock';
import { IdempotencyRepository } from './idempotency.repository';

@Injectable()
export class IdempotencyService {
  constructor(
    private readonly records: IdempotencyRepository,
    private readonly clock: Clock,
  ) {}

  /** Removes records past their 24 h expiry (scheduled in the worker). */
  async purgeExpired(): Promise<number> {
    let total = 0;
    for (;;) {
      const removed = await this.records.purgeExpired(this.clock.now());
      total += removed;
      if (removed === 0) return total;
    }
  }
}
