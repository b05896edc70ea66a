import { spawnSync } from 'node:child_process';

/** The characters of a secret the estimator reads: those past them are not judged. */
export const ESTIMATED_LENGTH = 256;

/**
 * The estimator, run in a child process of its own: zxcvbn's dictionaries and the garbage a
 * check makes grew a process's resident memory by ~20 MiB for good (an API process's budget is
 * 200 MiB: issue 14), and a child gives all of it back when it exits. The secrets go in on its
 * standard input (never its command line, which `ps` shows), the estimates come back as JSON. It
 * runs in this file's folder, so it finds the packages as this file would (src/ or dist/).
 */
const ESTIMATOR = `
const { ZxcvbnFactory } = require('@zxcvbn-ts/core');
const common = require('@zxcvbn-ts/language-common');
const estimator = new ZxcvbnFactory({
  graphs: common.adjacencyGraphs,
  dictionary: { ...common.dictionary },
  maxLength: ${ESTIMATED_LENGTH},
});
const { secrets, words } = JSON.parse(require('node:fs').readFileSync(0, 'utf8'));
process.stdout.write(JSON.stringify(secrets.map((s) => estimator.check(s, words).guessesLog10)));
`;

// the child's packages, resolved from here as the child resolves them (it runs in this folder): a
// missing one fails this module's load at once, not a boot's estimate later
require.resolve('@zxcvbn-ts/core');
require.resolve('@zxcvbn-ts/language-common');

/** Estimates made (a process judges its few secrets again on every configuration it loads). */
const estimates = new Map<string, number>();
const ESTIMATES_KEPT = 1024;

/**
 * How many guesses (log10) an attacker who tries patterns first — sequences (`abcdef…`,
 * `0123…`), keyboard rows (`qwerty…`), repeats, dates, common passwords and words, and `words`:
 * what the attacker knows of this deployment (a token's issuer and audience, the words every
 * deployment's secrets are made of) — needs for each secret, as zxcvbn estimates it (its first
 * ESTIMATED_LENGTH characters). Random output scores about one per character (32 random hex
 * characters: 26.4 at the least of 20,000 draws, 31.5 typically); a sequence of 32 characters about
 * 4, `shop-orders-jwt-secret-production-2026` 20 of its 38 told the deployment's words. One child
 * process for all the secrets not estimated before (~0.3 s); throws when it cannot run (a secret
 * that cannot be judged is not taken on trust).
 */
export function guessesLog10(secrets: readonly string[], words: readonly string[] = []): number[] {
  // (an estimate holds for the words it was made with)
  const told = JSON.stringify(words);
  const keyOf = (s: string) => `${told}\u0000${s}`;
  const found = new Map<string, number>();
  const unknown: string[] = [];
  for (const s of new Set(secrets)) {
    const known = estimates.get(keyOf(s));
    if (known === undefined) unknown.push(s);
    else found.set(s, known);
  }
  if (unknown.length > 0) {
    const run = spawnSync(process.execPath, ['-e', ESTIMATOR], {
      input: JSON.stringify({ secrets: unknown, words }),
      cwd: __dirname,
      encoding: 'utf8',
      timeout: 30_000,
      // (only what Node needs: the child has no business with the rest of the environment)
      env: { PATH: process.env.PATH ?? '' },
    });
    let made: unknown;
    try {
      made = JSON.parse(run.stdout);
    } catch {
      made = undefined;
    }
    if (!Array.isArray(made) || made.length !== unknown.length) {
      const why =
        run.error?.message ??
        (run.signal
          ? `killed by ${run.signal} (out of memory?)`
          : `exit ${run.status}: ${run.stderr.trim().slice(0, 200)}`);
      throw new Error(`the secrets' strength could not be estimated (${why})`);
    }
    if (estimates.size > ESTIMATES_KEPT) estimates.clear();
    unknown.forEach((s, i) => {
      found.set(s, Number(made[i]));
      estimates.set(keyOf(s), Number(made[i]));
    });
  }
  return secrets.map((s) => found.get(s) as number);
}
