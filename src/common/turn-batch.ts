import { AsyncResource } from 'node:async_hooks';

/**
 * One call for many asks: the asks wait for a single call issued (on `setImmediate`) after the
 * last of them arrived. Because that call starts after every ask in the batch, each one still
 * sees any write that completed before it was made — as fresh as one call per ask.
 *
 * - By default a call is issued for each event-loop turn that has asks (a turn's asks share it).
 * - `oneAtATime`: while a call is in flight, new asks wait for it to end and then share the next
 *   one — under load, one call per round trip instead of one per turn, for a store that is
 *   busy with other work (the database during a sale).
 * - `maxBatch`: at most this many asks per call; the rest wait for the next one.
 *
 * `answer` gets the asks in arrival order and returns one answer per ask, in the same order;
 * when it fails, every ask of the batch gets `fallback(error)`. It runs in the async context the
 * batch was created in, never in the context of whichever request happened to ask first (its
 * transaction or its log bindings are not the others').
 */
export class TurnBatch<Q, A> {
  private waiting: { ask: Q; resolve: (answer: A) => void }[] = [];
  private scheduled = false;
  private inFlight = false;
  private readonly context = new AsyncResource('TurnBatch');

  constructor(
    private readonly answer: (asks: Q[]) => Promise<A[]>,
    private readonly fallback: (err: unknown) => A,
    private readonly options: { oneAtATime?: boolean; maxBatch?: number } = {},
  ) {}

  ask(ask: Q): Promise<A> {
    return new Promise((resolve) => {
      this.waiting.push({ ask, resolve });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.scheduled || (this.options.oneAtATime && this.inFlight) || this.waiting.length === 0)
      return;
    this.scheduled = true;
    this.context.runInAsyncScope(() => setImmediate(() => void this.flush()));
  }

  private async flush(): Promise<void> {
    this.scheduled = false;
    const batch = this.options.maxBatch
      ? this.waiting.splice(0, this.options.maxBatch)
      : this.waiting;
    if (!this.options.maxBatch) this.waiting = [];
    this.inFlight = true;
    let answers: A[];
    try {
      answers = await this.answer(batch.map((w) => w.ask));
    } catch (err) {
      const answer = this.fallback(err);
      answers = batch.map(() => answer);
    }
    this.inFlight = false;
    batch.forEach((w, i) => w.resolve(answers[i]));
    if (this.options.oneAtATime || this.waiting.length > 0) this.schedule();
  }
}
