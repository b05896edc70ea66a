import { DomainError } from '../common/errors/domain-error';
import { BuildBudget } from './build-budget';

describe('BuildBudget', () => {
  let now = 0;
  const budget = (maxClients?: number) =>
    new BuildBudget({ budgetMs: 100, windowMs: 60_000, concurrent: 2, maxClients, now: () => now });
  const refusal = (run: () => unknown): DomainError | undefined => {
    try {
      run();
    } catch (err) {
      return err as DomainError;
    }
    return undefined;
  };
  beforeEach(() => {
    now = 0;
  });

  it('admits builds until their time reaches the budget, then refuses 429 with the window’s rest as Retry-After', () => {
    const b = budget();
    b.admit('a')(60);
    b.admit('a')(45); // 105 ms: over
    now = 20_000;
    const err = refusal(() => b.admit('a'));
    expect(err?.code).toBe('RATE_LIMITED');
    expect(err?.options.headers).toEqual({ 'Retry-After': '40' });
    // another client is untouched; a new window admits again
    expect(refusal(() => b.admit('b')(1))).toBeUndefined();
    now = 60_000;
    expect(refusal(() => b.admit('a'))).toBeUndefined();
  });

  it('refuses a third build under way at once (Retry-After 1), and admits again once one ends; a spend counts once', () => {
    const b = budget();
    const one = b.admit('a');
    b.admit('a');
    expect(refusal(() => b.admit('a'))?.options.headers).toEqual({ 'Retry-After': '1' });
    one(10);
    one(1_000); // ignored
    expect(refusal(() => b.admit('a'))).toBeUndefined();
  });

  it('tracks at most maxClients: a new client past them is not limited here, until expired windows make room', () => {
    const b = budget(2);
    b.admit('a')(500);
    b.admit('b')(500);
    const untracked = b.admit('c');
    untracked(1_000);
    expect(b.size).toBe(2);
    expect(refusal(() => b.admit('c'))).toBeUndefined();
    now = 61_000;
    b.admit('c')(500);
    expect(refusal(() => b.admit('c'))?.code).toBe('RATE_LIMITED');
  });
});
