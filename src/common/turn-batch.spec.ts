import { AsyncLocalStorage } from 'node:async_hooks';
import { TurnBatch } from './turn-batch';

describe('TurnBatch', () => {
  it('answers every ask of one event-loop turn from one call, each with its own answer, in order', async () => {
    const answer = jest.fn(async (asks: number[]) => asks.map((n) => n * 10));
    const batch = new TurnBatch(answer, () => -1);
    expect(await Promise.all([batch.ask(1), batch.ask(2), batch.ask(3)])).toEqual([10, 20, 30]);
    expect(answer).toHaveBeenCalledTimes(1);
    expect(answer).toHaveBeenCalledWith([1, 2, 3]);
  });

  it('an ask made while a call is in flight waits for the next call', async () => {
    let release!: () => void;
    const answer = jest
      .fn<Promise<string[]>, [string[]]>()
      .mockImplementationOnce(
        (asks) => new Promise((r) => (release = () => r(asks.map((a) => `${a}1`)))),
      )
      .mockImplementationOnce(async (asks) => asks.map((a) => `${a}2`));
    const batch = new TurnBatch(answer, () => 'fallback');
    const first = batch.ask('a');
    await new Promise((r) => setImmediate(r)); // the first call is now in flight
    const second = batch.ask('b');
    release();
    expect(await first).toBe('a1');
    expect(await second).toBe('b2');
    expect(answer).toHaveBeenCalledTimes(2);
  });

  it('gives every ask of a failed call the fallback for its error', async () => {
    const batch = new TurnBatch<number, string>(
      () => Promise.reject(new Error('ECONNREFUSED')),
      (err) => (err as Error).message,
    );
    expect(await Promise.all([batch.ask(1), batch.ask(2)])).toEqual([
      'ECONNREFUSED',
      'ECONNREFUSED',
    ]);
  });

  it('oneAtATime: asks made while a call is in flight share one call issued after it ends', async () => {
    const releases: (() => void)[] = [];
    const answer = jest.fn(
      (asks: number[]) =>
        new Promise<number[]>((r) => releases.push(() => r(asks.map((n) => n + 1)))),
    );
    const batch = new TurnBatch(answer, () => 0, { oneAtATime: true });
    const first = batch.ask(1);
    await new Promise((r) => setImmediate(r)); // the first call is now in flight
    const later = [batch.ask(2)];
    await new Promise((r) => setImmediate(r)); // another turn: no second call while one is in flight
    later.push(batch.ask(3));
    expect(answer).toHaveBeenCalledTimes(1);
    releases[0]();
    expect(await first).toBe(2);
    await new Promise((r) => setImmediate(r));
    expect(answer).toHaveBeenCalledTimes(2);
    expect(answer).toHaveBeenLastCalledWith([2, 3]);
    releases[1]();
    expect(await Promise.all(later)).toEqual([3, 4]);
  });

  it("answers in the context the batch was made in, not in the first asker's", async () => {
    const als = new AsyncLocalStorage<string>();
    const seen: (string | undefined)[] = [];
    const batch = als.run(
      'owner',
      () =>
        new TurnBatch(
          async (asks: number[]) => {
            seen.push(als.getStore());
            return asks;
          },
          () => 0,
        ),
    );
    await als.run('request 1', () =>
      Promise.all([batch.ask(1), als.run('request 2', () => batch.ask(2))]),
    );
    expect(seen).toEqual(['owner']);
  });
});
