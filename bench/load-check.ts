/**
 * What a benchmark's load runs answered, and whether the run may stand: every measured run prints
 * its errors, timeouts and resets, and a run with any of them, or with an answer whose status the
 * scenario does not expect (a 404 from a route gone, a 429 from a rate limit, a 500), fails — the
 * benchmark exits non-zero and writes nothing to docs/BENCHMARKS.md. (A catalog route answering
 * 404 at 8,452 req/s once "met" its target: every answer counted as throughput.)
 */

/** One autocannon run, as the benchmarks report and check it. */
export interface LoadRun {
  label: string;
  /** How long it ran, s (autocannon's own measure). */
  seconds: number;
  /** Answers per HTTP status. */
  statuses: Record<string, number>;
  /** Requests that got no answer: socket errors and timeouts (autocannon counts both). */
  errors: number;
  timeouts: number;
  /** Times autocannon's request pipeline was reset (a setupRequest gave no request). */
  resets: number;
  /** Latency of every answer, ms. */
  p50: number;
  p99: number;
}

/** The fields of autocannon's result that LoadRun reads. */
interface AutocannonResult {
  duration: number;
  statusCodeStats?: Record<string, { count: number }>;
  errors: number;
  timeouts: number;
  resets: number;
  latency: { p50: number; p99: number };
}

export function loadRun(label: string, result: AutocannonResult): LoadRun {
  const statuses: Record<string, number> = {};
  for (const [code, s] of Object.entries(result.statusCodeStats ?? {})) statuses[code] = s.count;
  return {
    label,
    seconds: result.duration,
    statuses,
    errors: result.errors,
    timeouts: result.timeouts,
    resets: result.resets,
    p50: result.latency.p50,
    p99: result.latency.p99,
  };
}

/** Which statuses a scenario expects. */
export type Expected = (status: number) => boolean;

/** Any 2xx. */
export const success: Expected = (status) => status >= 200 && status < 300;

/** Exactly these statuses. */
export const only =
  (...statuses: number[]): Expected =>
  (status) =>
    statuses.includes(status);

/** Answers of the expected statuses. */
export function answered(run: LoadRun, expected: Expected): number {
  return Object.entries(run.statuses)
    .filter(([code]) => expected(Number(code)))
    .reduce((sum, [, count]) => sum + count, 0);
}

/** Answers of the expected statuses per second: the throughput (never other answers). */
export function rateOf(run: LoadRun, expected: Expected): number {
  return run.seconds > 0 ? answered(run, expected) / run.seconds : 0;
}

/** Answers of statuses the scenario does not expect, per status. */
export function unexpected(run: LoadRun, expected: Expected): Record<string, number> {
  return Object.fromEntries(
    Object.entries(run.statuses).filter(([code, count]) => count > 0 && !expected(Number(code))),
  );
}

/** `errors 0, timeouts 0, resets 0; answers {"201":5012}` */
function describeRun(run: LoadRun): string {
  return (
    `errors ${run.errors}, timeouts ${run.timeouts}, resets ${run.resets}; ` +
    `answers ${JSON.stringify(run.statuses)}`
  );
}

/** Why the run cannot stand (nothing when it can). */
export function problemsOf(run: LoadRun, expected: Expected): string[] {
  const problems: string[] = [];
  if (run.errors > 0 || run.timeouts > 0)
    problems.push(`${run.errors} errors (${run.timeouts} of them timeouts)`);
  if (run.resets > 0) problems.push(`${run.resets} request pipeline resets`);
  const others = unexpected(run, expected);
  if (Object.keys(others).length > 0) problems.push(`unexpected answers ${JSON.stringify(others)}`);
  if (answered(run, expected) === 0) problems.push('no answer of the expected status');
  return problems.map((p) => `${run.label}: ${p}`);
}

/**
 * The problems of one benchmark run: each measured run is checked (and its errors printed) as it
 * ends; at the end, `refuse()` says whether the results may be written.
 */
export class RunChecks {
  private readonly problems: string[] = [];
  private readonly runs: LoadRun[] = [];

  /** Prints the run's errors, timeouts, resets and answers; records why it cannot stand. */
  check(run: LoadRun, expected: Expected): LoadRun {
    const problems = problemsOf(run, expected);
    console.log(`${run.label}: ${describeRun(run)}${problems.length > 0 ? ' — FAILED' : ''}`);
    this.runs.push(run);
    this.problems.push(...problems);
    return run;
  }

  /** Every run checked, one Markdown list item each: label, errors, timeouts, resets, answers. */
  summary(): string {
    return this.runs.map((run) => `- ${run.label}: ${describeRun(run)}`).join('\n');
  }

  /** Records a problem found otherwise (a baseline's failed transactions). */
  add(problem: string): void {
    console.log(`FAILED: ${problem}`);
    this.problems.push(problem);
  }

  /**
   * True (after printing why) when any run had errors, timeouts, resets or unexpected answers:
   * the caller then exits non-zero and writes nothing.
   */
  refuse(): boolean {
    if (this.problems.length === 0) return false;
    console.error(
      `\nbenchmark FAILED — not written to docs/BENCHMARKS.md:\n${this.problems.map((p) => `- ${p}`).join('\n')}`,
    );
    return true;
  }
}

/** A rate with its latencies, ms. */
interface Timed {
  rps: number;
  p50: number;
  p99: number;
}

/**
 * A baseline measured right before and right after the runs compared with it, as one: the mean
 * rate (the ratios' denominator) and each run's own rate and latencies — never one run's
 * latencies under the two runs' mean.
 */
export function beforeAndAfter(
  before: Timed,
  after: Timed,
): { rps: number; rates: string; latencies: string } {
  const rate = (n: number) => n.toFixed(0);
  return {
    rps: (before.rps + after.rps) / 2,
    rates: `${rate(before.rps)} before, ${rate(after.rps)} after`,
    latencies: `${before.p50} / ${before.p99} before, ${after.p50} / ${after.p99} after`,
  };
}
