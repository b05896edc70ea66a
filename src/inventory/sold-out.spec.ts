import type Redis from 'ioredis';
import { AppConfig, loadConfig } from '../config/config';
import { SoldOutMarks } from './sold-out';
import { mockOf } from '../../test/support/mocks';

const P = '0b7f7e3c-6a47-4d4c-9e4e-2f0a4b1c9d01';
const Q = '5d2c1a0e-3b4f-4a6d-8c7e-9f8a7b6c5d02';

/** A Redis holding `values`; MGET and EVAL behave as told. */
function fakeRedis(opts: {
  values?: Record<string, string>;
  mget?: 'answer' | 'fail' | 'stall';
  evalFails?: boolean;
}): Redis {
  const values = opts.values ?? {};
  return mockOf<Redis>(
    {
      mget: (...keys: string[]) => {
        if (opts.mget === 'fail') return Promise.reject(new Error('ECONNREFUSED'));
        if (opts.mget === 'stall') return new Promise(() => undefined);
        return Promise.resolve(keys.map((k) => values[k] ?? null));
      },
      eval: () => (opts.evalFails ? Promise.reject(new Error('ECONNREFUSED')) : Promise.resolve(1)),
      set: () => Promise.resolve('OK'),
    },
    'redis',
  );
}

describe('SoldOutMarks (the sold-out knowledge refuses only when sure)', () => {
  const config: AppConfig = loadConfig({ NODE_ENV: 'development', REDIS_KEY_PREFIX: 'x' });
  const mark = (p: string) => `x:stock:sold-out:${p}`;
  let marks: SoldOutMarks | undefined;
  afterEach(() => marks?.onApplicationShutdown());

  it('refuses when every product is marked', async () => {
    marks = new SoldOutMarks(
      fakeRedis({ values: { [mark(P)]: 'g', [mark(Q)]: 'g', 'x:stock:generation': 'g' } }),
      config,
    );
    expect(await marks.knownSoldOut([P, Q])).toBe(true);
    expect(marks.generation()).toBe('g');
  });

  it('goes the normal path when one product is not marked', async () => {
    marks = new SoldOutMarks(fakeRedis({ values: { [mark(P)]: 'g' } }), config);
    expect(await marks.knownSoldOut([P, Q])).toBe(false);
  });

  it('goes the normal path when Redis fails, and when it stalls (after 250 ms)', async () => {
    marks = new SoldOutMarks(fakeRedis({ values: { [mark(P)]: 'g' }, mget: 'fail' }), config);
    expect(await marks.knownSoldOut([P])).toBe(false);
    marks.onApplicationShutdown();
    marks = new SoldOutMarks(fakeRedis({ values: { [mark(P)]: 'g' }, mget: 'stall' }), config);
    const started = Date.now();
    expect(await marks.knownSoldOut([P])).toBe(false);
    expect(Date.now() - started).toBeLessThan(3_000); // (250 ms, and room for a stall)
  });

  it('a clear that lands while a later one of the same product failed leaves the later one pending (retried, unrefused meanwhile)', async () => {
    jest.useFakeTimers({ doNotFake: ['performance'] });
    try {
      const values: Record<string, string> = { [mark(P)]: 'g', 'x:stock:generation': 'g' };
      let answerFirst!: () => void;
      const evals: string[][] = [];
      const redis = mockOf<Redis>(
        {
          mget: (...keys: string[]) => Promise.resolve(keys.map((k) => values[k] ?? null)),
          eval: (_script: string, n: number, ...args: string[]) => {
            evals.push(args.slice(1, n));
            if (evals.length === 1)
              return new Promise((resolve) => (answerFirst = () => resolve(1))); // slow, then lands
            if (evals.length === 2) return Promise.reject(new Error('ECONNRESET')); // the later one fails
            delete values[mark(P)]; // the retry lands
            return Promise.resolve(1);
          },
          set: () => Promise.resolve('OK'),
        },
        'redis',
      );
      marks = new SoldOutMarks(redis, config);
      marks.cleared([P]);
      marks.cleared([P]);
      await jest.advanceTimersByTimeAsync(0);
      answerFirst();
      await jest.advanceTimersByTimeAsync(0);
      // meanwhile a buyer elsewhere marked it again (under the first clear's generation)
      values[mark(P)] = 'g';
      expect(await marks.knownSoldOut([P])).toBe(false); // still pending here: not refused
      await jest.advanceTimersByTimeAsync(1_000); // the retry
      expect(evals.length).toBe(3);
      expect(evals[2]).toEqual([mark(P)]);
    } finally {
      jest.useRealTimers();
    }
  });

  it('never refuses a product whose clear has not reached Redis yet, in the process that made it', async () => {
    marks = new SoldOutMarks(
      fakeRedis({ values: { [mark(P)]: 'g', [mark(Q)]: 'g' }, evalFails: true }),
      config,
    );
    marks.cleared([P]);
    expect(await marks.knownSoldOut([P])).toBe(false);
    expect(await marks.knownSoldOut([Q])).toBe(true);
  });
});
