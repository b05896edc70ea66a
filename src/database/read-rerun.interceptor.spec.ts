import type { CallHandler, ExecutionContext } from '@nestjs/common';
import { defer, lastValueFrom } from 'rxjs';
import { QueryFailedError } from 'typeorm';
import { ReadRerunInterceptor } from './read-rerun.interceptor';
import { wasRunAgain } from './transaction-host';

/** The breaker's 503 for a connection that died under its statement (its cause: the reset). */
const blink = () => {
  const reset = Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' });
  return Object.assign(new Error('The database is unavailable; retry later.'), {
    cause: new QueryFailedError('SELECT 1', [], reset),
  });
};

const get = {
  getType: () => 'http',
  switchToHttp: () => ({ getRequest: () => ({ method: 'GET' }) }),
} as unknown as ExecutionContext;

describe('ReadRerunInterceptor', () => {
  const run = (answers: (() => unknown)[]) => {
    let runs = 0;
    const next: CallHandler = {
      handle: () =>
        defer(async () => {
          const answer = answers[runs++]();
          if (answer instanceof Error) throw answer;
          return answer;
        }),
    };
    const result = lastValueFrom(new ReadRerunInterceptor().intercept(get, next));
    return { result, runs: () => runs };
  };

  it('runs a read whose connection died under it once more, and answers what that run answers', async () => {
    const { result, runs } = run([blink, () => 'read']);
    await expect(result).resolves.toBe('read');
    expect(runs()).toBe(2);
  });

  it('runs it once in all: a second death answers as the first (its Retry-After), and is not run a third time', async () => {
    const first = blink();
    const { result, runs } = run([() => first, blink, () => 'never']);
    await expect(result).rejects.toBe(first);
    expect(runs()).toBe(2);
    expect(wasRunAgain(first)).toBe(true);
  });

  it('does not run again what TransactionHost ran again already', async () => {
    const first = blink();
    await expect(run([() => first, blink]).result).rejects.toBeDefined(); // marks it
    const { result, runs } = run([() => first, () => 'never']);
    await expect(result).rejects.toBe(first);
    expect(runs()).toBe(1);
  });

  it('runs no write again, nor a read that failed otherwise', async () => {
    const post = {
      getType: () => 'http',
      switchToHttp: () => ({ getRequest: () => ({ method: 'POST' }) }),
    } as unknown as ExecutionContext;
    let runs = 0;
    const next: CallHandler = {
      handle: () =>
        defer(async () => {
          runs++;
          throw blink();
        }),
    };
    await expect(
      lastValueFrom(new ReadRerunInterceptor().intercept(post, next)),
    ).rejects.toBeDefined();
    expect(runs).toBe(1);
    const other = run([() => new Error('not found'), () => 'never']);
    await expect(other.result).rejects.toThrow('not found');
    expect(other.runs()).toBe(1);
  });
});
