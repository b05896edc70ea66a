import type * as Policies from '../../src/common/throttling/rate-limit.policies';

/**
 * rate-limit.policies with the progressive sign-in delay starting at `baseMs` instead of
 * SIGN_IN_DELAY_BASE_MS (1 s), for a test file's `jest.mock` of that module:
 *
 *   jest.mock('../../src/common/throttling/rate-limit.policies', () =>
 *     jest.requireActual('../support/sign-in-delay').policiesWithDelayBase(3_000));
 *
 * A test that asserts the attempt after the free failures is refused needs it to arrive within
 * the lock; 1 s counted from the last failure is less than a loaded run can take between two
 * requests (the lock over, the guess verified: 401 for the 429 asserted).
 */
export function policiesWithDelayBase(baseMs: number): typeof Policies {
  const actual = jest.requireActual<typeof Policies>(
    '../../src/common/throttling/rate-limit.policies',
  );
  return {
    ...actual,
    signInBuckets: (...args: Parameters<typeof actual.signInBuckets>) =>
      actual
        .signInBuckets(...args)
        .map((bucket) => (bucket.kind === 'progressive' ? { ...bucket, baseMs } : bucket)),
  };
}
