import { TurnBatch } from '../common/turn-batch';

/**
 * Reads the catalog version for many requests with one Redis GET: the requests that arrive
 * during one turn of the event loop wait for a single read issued after all of them arrived
 * (on `setImmediate`). Because that read starts after every request in the batch, each one
 * still sees any write that completed before it arrived — as fresh as one read per request.
 */
export class CoalescedVersionReader {
  private readonly batch: TurnBatch<void, string | undefined>;

  /** `read` answers the current version, or undefined when the store is unreachable. */
  constructor(read: () => Promise<string | undefined>) {
    this.batch = new TurnBatch(
      async (asks) => {
        const version = await read();
        return asks.map(() => version);
      },
      () => undefined,
    );
  }

  current(): Promise<string | undefined> {
    return this.batch.ask();
  }
}
