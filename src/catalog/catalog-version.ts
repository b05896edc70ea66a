/**
 * Reads the catalog version for many requests with one Redis GET: the requests that arrive
 * during one turn of the event loop wait for a single read issued after all of them arrived
 * (on `setImmediate`). Because that read starts after every request in the batch, each one
 * still sees any write that completed before it arrived — as fresh as one read per request.
 */
export class CoalescedVersionReader {
  private waiting: ((version: string | undefined) => void)[] | null = null;

  /** `read` answers the current version, or undefined when the store is unreachable. */
  constructor(private readonly read: () => Promise<string | undefined>) {}

  current(): Promise<string | undefined> {
    return new Promise((resolve) => {
      if (this.waiting) {
        this.waiting.push(resolve);
        return;
      }
      this.waiting = [resolve];
      setImmediate(() => void this.flush());
    });
  }

  private async flush(): Promise<void> {
    const batch = this.waiting ?? [];
    this.waiting = null;
    const version = await this.read().catch(() => undefined);
    for (const resolve of batch) resolve(version);
  }
}
