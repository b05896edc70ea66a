import { DomainError } from '../common/errors/domain-error';
import { BuildBudget } from './build-budget';

describe('BuildBudget', () => {
  let now = 0;
  const budget = (maxClients?: number) =>
    new BuildBudget({ budgetMs: 100, windowMs: 60_000, begun: 2, maxClients, now: () => now });
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
    // not only searches pay: any build of a page not cached does
    expect(err?.message).toBe(
      'Too much catalog build time (searches, pages not cached) used by this client; try again later.',
    );
    expect(err?.options.headers).toEqual({ 'Retry-After': '40' });
    // another client is untouched; a new window admits again
    expect(refusal(() => b.admit('b')(1))).toBeUndefined();
    now = 60_000;
    expect(refusal(() => b.admit('a'))).toBeUndefined();
  });

  it('refuses a third build begun at once (Retry-After 1), and admits again once one ends; a spend counts once', () => {
    const b = budget();
    const one = b.admit('a');
    b.admit('a');
    const third = refusal(() => b.admit('a'));
    expect(third?.options.headers).toEqual({ 'Retry-After': '1' });
    expect(third?.message).toBe(
      'Too many catalog reads being built at once for this client; try again later.',
    );
    one(10);
    one(1_000); // ignored
    expect(refusal(() => b.admit('a'))).toBeUndefined();
  });

  it('tracks at most maxClients: a new client past them takes the place of the window begun longest ago with no build under way — it is counted, never left unlimited', () => {
    const b = budget(2);
    const running = b.admit('a'); // a build under way: its window is kept
    now = 1_000;
    b.admit('b')(500);
    now = 2_000;
    b.admit('c')(500); // full, nothing expired: b's window makes room
    expect(b.size).toBe(2);
    expect(refusal(() => b.admit('c'))?.code).toBe('RATE_LIMITED');
    // b's spend is forgotten: a new window for it, in place of c's (a's still building)
    expect(refusal(() => b.admit('b')(500))).toBeUndefined();
    expect(refusal(() => b.admit('b'))?.code).toBe('RATE_LIMITED');
    expect(b.size).toBe(2);
    running(10);
  });

  it('orders the windows by when they began: one renewed goes last, and the oldest is dropped first', () => {
    const b = budget(2);
    const held = b.admit('a');
    now = 2_000;
    b.admit('b')(1);
    now = 61_000;
    const again = b.admit('a'); // a's window over while its build is under way: renewed in place
    held(0);
    again(500);
    b.admit('c')(1); // full, nothing expired: b's window (begun before a's renewed one) makes room
    expect(refusal(() => b.admit('a'))?.code).toBe('RATE_LIMITED');
  });

  it('names the network in a refusal of a /48 budget', () => {
    const b = new BuildBudget({ budgetMs: 10, windowMs: 60_000, begun: 1, who: 'network' });
    b.admit('net:2001:db8:1::/48')(20);
    expect(refusal(() => b.admit('net:2001:db8:1::/48'))?.message).toMatch(/network/);
  });
});
