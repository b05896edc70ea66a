/**
 * One call for every ask made during one turn of the event loop: the asks wait for a single
 * call issued (on `setImmediate`) after the last of them arrived. Because that call starts after
 * every ask in the batch, each one still sees any write that completed before it was made — as
 * fresh as one call per ask, at the cost of one call per turn.
 *
 * `answer` gets the asks in arrival order and returns one answer per ask, in the same order;
 * when it fails, every ask of the batch gets `fallback(error)`.
 */
export class TurnBatch<Q, A> {
  private waiting: { ask: Q; resolve: (answer: A) => void }[] | null = null;

  constructor(
    private readonly answer: (asks: Q[]) => Promise<A[]>,
    private readonly fallback: (err: unknown) => A,
  ) {}

  ask(ask: Q): Promise<A> {
    return new Promise((resolve) => {
      if (this.waiting) {
        this.waiting.push({ ask, resolve });
        return;
      }
      this.waiting = [{ ask, resolve }];
      setImmediate(() => void this.flush());
    });
  }

  private async flush(): Promise<void> {
    const batch = this.waiting ?? [];
    this.waiting = null;
    let answers: A[];
    try {
      answers = await this.answer(batch.map((w) => w.ask));
    } catch (err) {
      const answer = this.fallback(err);
      answers = batch.map(() => answer);
    }
    batch.forEach((w, i) => w.resolve(answers[i]));
  }
}
