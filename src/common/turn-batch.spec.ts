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
      .mockImplementationOnce((asks) => new Promise((r) => (release = () => r(asks.map((a) => `${a}1`)))))
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
    expect(await Promise.all([batch.ask(1), batch.ask(2)])).toEqual(['ECONNREFUSED', 'ECONNREFUSED']);
  });
});
