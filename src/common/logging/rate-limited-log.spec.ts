import { RateLimitedLog } from './rate-limited-log';

describe('RateLimitedLog', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  it('writes the first line of a key at once, then at most one per window saying how many were held back', () => {
    const log = new RateLimitedLog(10_000);
    const lines: string[] = [];
    const write = (line: string) => lines.push(line);
    for (let i = 0; i < 5_000; i++) log.write('a', 'boom', write); // a flood, all at once
    expect(lines).toEqual(['boom']);
    jest.advanceTimersByTime(9_999);
    for (let i = 0; i < 1_000; i++) log.write('a', 'boom', write);
    expect(lines).toEqual(['boom']);
    jest.advanceTimersByTime(1);
    expect(lines).toEqual(['boom', 'boom (5999 more in 10 s)']);
    // still coming: one line per window
    for (let s = 0; s < 30; s++) {
      for (let i = 0; i < 100; i++) log.write('a', 'boom', write);
      jest.advanceTimersByTime(1_000);
    }
    expect(lines).toEqual([
      'boom',
      'boom (5999 more in 10 s)',
      'boom (1000 more in 10 s)',
      'boom (1000 more in 10 s)',
      'boom (1000 more in 10 s)',
    ]);
  });

  it('forgets a key quiet for a window: its next line is written at once, with nothing to count', () => {
    const log = new RateLimitedLog(10_000);
    const lines: string[] = [];
    const write = (line: string) => lines.push(line);
    log.write('a', 'boom', write);
    jest.advanceTimersByTime(10_000);
    expect(lines).toEqual(['boom']);
    log.write('a', 'boom', write);
    expect(lines).toEqual(['boom', 'boom']);
    jest.advanceTimersByTime(60_000);
    expect(lines).toEqual(['boom', 'boom']);
  });

  it('limits each key on its own', () => {
    const log = new RateLimitedLog(10_000);
    const lines: string[] = [];
    const write = (line: string) => lines.push(line);
    log.write('a', 'a', write);
    log.write('b', 'b', write);
    log.write('a', 'a', write);
    log.write('b', 'b', write);
    log.write('b', 'b', write);
    expect(lines).toEqual(['a', 'b']);
    jest.advanceTimersByTime(10_000);
    expect(lines).toEqual(['a', 'b', 'a (1 more in 10 s)', 'b (2 more in 10 s)']);
  });

  it('past maxKeys keys at once, the lines of further keys share one, still bounded', () => {
    const log = new RateLimitedLog(10_000, 2);
    const lines: string[] = [];
    const write = (line: string) => lines.push(line);
    for (let i = 0; i < 1_000; i++) log.write(`k${i}`, `line ${i}`, write);
    expect(lines).toEqual([
      'line 0',
      'line 1',
      'line 2 (and others: too many kinds to count apart)',
    ]);
    jest.advanceTimersByTime(10_000);
    expect(lines.slice(3)).toEqual([
      'line 999 (and others: too many kinds to count apart) (997 more in 10 s)',
    ]);
  });

  it('never keeps the process alive for a window', () => {
    jest.useRealTimers();
    const unref = jest.spyOn(Object.getPrototypeOf(setTimeout(() => undefined, 0)), 'unref');
    new RateLimitedLog(10_000).write('a', 'a', () => undefined);
    expect(unref).toHaveBeenCalled();
    unref.mockRestore();
  });
});
