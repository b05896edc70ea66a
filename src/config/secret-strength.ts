import type * as Core from '@zxcvbn-ts/core';
import type * as Common from '@zxcvbn-ts/language-common';

let estimator: Core.ZxcvbnFactory | undefined;
/** Estimates made (a process judges its few secrets again on every configuration it loads). */
const estimates = new Map<string, number>();
const ESTIMATES_KEPT = 64;

/**
 * How many guesses (log10) an attacker who tries patterns first — sequences (`abcdef…`,
 * `0123…`), keyboard rows (`qwerty…`), repeats, dates, common passwords and words — needs for
 * `secret`, as zxcvbn estimates it. Random output scores about its length in hex digits (32
 * random hex characters: 27 at the least of 20,000 draws, 31.5 typically); a sequence of 32
 * characters about 4.
 */
export function guessesLog10(secret: string): number {
  if (!estimator) {
    // loaded on first use (~130 ms, its dictionaries): only a deployment outside development
    // judges its secrets
    /* eslint-disable @typescript-eslint/no-require-imports */
    const { ZxcvbnFactory } = require('@zxcvbn-ts/core') as typeof Core;
    const common = require('@zxcvbn-ts/language-common') as typeof Common;
    /* eslint-enable @typescript-eslint/no-require-imports */
    estimator = new ZxcvbnFactory({
      graphs: common.adjacencyGraphs,
      dictionary: { ...common.dictionary },
    });
  }
  let estimate = estimates.get(secret);
  if (estimate === undefined) {
    estimate = estimator.check(secret).guessesLog10;
    if (estimates.size >= ESTIMATES_KEPT) estimates.clear();
    estimates.set(secret, estimate);
  }
  return estimate;
}
