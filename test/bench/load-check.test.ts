import {
  RunChecks,
  loadRun,
  only,
  problemsOf,
  rateOf,
  success,
  unexpected,
} from '../../bench/load-check';

/** An autocannon result as its run gives it (the fields the benchmarks read). */
const result = (
  statuses: Record<string, number>,
  more: Partial<{ errors: number; timeouts: number; resets: number; duration: number }> = {},
) => ({
  duration: 10,
  errors: 0,
  timeouts: 0,
  resets: 0,
  latency: { p50: 3, p99: 12 },
  statusCodeStats: Object.fromEntries(
    Object.entries(statuses).map(([code, count]) => [code, { count }]),
  ),
  ...more,
});

/**
 * The benchmarks count only the answers their scenario is about, and a run with errors,
 * timeouts, resets or an answer of another status does not stand: the catalog once reported a
 * route answering 404 at 8,452 req/s (8,448 errors) as "3.73× met".
 */
describe('a benchmark load run', () => {
  it('counts only the expected answers as throughput (a 404 is no catalog read)', () => {
    const run = loadRun('cached detail', result({ '200': 40, '404': 84_480 }));
    expect(rateOf(run, success)).toBe(4);
    expect(unexpected(run, success)).toEqual({ '404': 84_480 });
    expect(problemsOf(run, success)).toEqual(['cached detail: unexpected answers {"404":84480}']);
  });

  it.each([
    ['errors', { errors: 3 }, 'x: 3 errors (0 of them timeouts)'],
    ['timeouts', { errors: 2, timeouts: 2 }, 'x: 2 errors (2 of them timeouts)'],
    ['resets', { resets: 1 }, 'x: 1 request pipeline resets'],
  ])('does not stand with %s', (_what, more, problem) => {
    expect(problemsOf(loadRun('x', result({ '201': 100 }, more)), only(201))).toEqual([problem]);
  });

  it('does not stand with a 429 (rate limiting on) nor with nothing of the expected status', () => {
    expect(problemsOf(loadRun('x', result({ '201': 9, '429': 1 })), only(201))).toEqual([
      'x: unexpected answers {"429":1}',
    ]);
    expect(problemsOf(loadRun('x', result({})), only(201))).toEqual([
      'x: no answer of the expected status',
    ]);
  });

  it('stands with only the statuses its scenario expects', () => {
    const soldOut = loadRun('sold-out run', result({ '201': 500, '409': 1500 }));
    expect(problemsOf(soldOut, only(201, 409))).toEqual([]);
    expect(rateOf(soldOut, only(201))).toBe(50);
    expect(problemsOf(loadRun('refusals', result({ '409': 5 })), only(409))).toEqual([]);
  });

  it('fails the benchmark (nothing written) once any run did not stand, and lists every run', () => {
    const log = jest.spyOn(console, 'log').mockImplementation(() => undefined);
    const error = jest.spyOn(console, 'error').mockImplementation(() => undefined);
    try {
      const checks = new RunChecks();
      checks.check(loadRun('baseline, before', result({ '200': 10 })), success);
      expect(checks.refuse()).toBe(false);
      checks.check(loadRun('baseline, after', result({ '200': 10 }, { errors: 1 })), success);
      expect(checks.refuse()).toBe(true);
      expect(log).toHaveBeenCalledWith(
        'baseline, after: errors 1, timeouts 0, resets 0; answers {"200":10} — FAILED',
      );
      expect(error.mock.calls[0][0]).toContain('- baseline, after: 1 errors (0 of them timeouts)');
      expect(checks.summary()).toBe(
        '- baseline, before: errors 0, timeouts 0, resets 0; answers {"200":10}\n' +
          '- baseline, after: errors 1, timeouts 0, resets 0; answers {"200":10}',
      );
    } finally {
      log.mockRestore();
      error.mockRestore();
    }
  });
});
