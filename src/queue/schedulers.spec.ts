import { createHash } from 'node:crypto';
import { SCHEDULES, SCHEDULES_REVISION } from './schedulers';

/**
 * SCHEDULES_REVISION orders builds during a rolling deploy (only the newest changes or removes
 * schedulers): a change to SCHEDULES without raising it would let an older build undo it. Changing
 * SCHEDULES? Raise SCHEDULES_REVISION and record the new list's digest here.
 */
const DIGEST_OF_REVISION: Record<number, string> = {
  1: 'bee9379fdf170a15833af2a33c0ed3f544b3615a6c7db9fa43f4c8b6077fc00c',
};

describe('SCHEDULES_REVISION', () => {
  it('is raised with every change to SCHEDULES', () => {
    const digest = createHash('sha256').update(JSON.stringify(SCHEDULES)).digest('hex');
    expect({ revision: SCHEDULES_REVISION, digest }).toEqual({
      revision: SCHEDULES_REVISION,
      digest: DIGEST_OF_REVISION[SCHEDULES_REVISION],
    });
  });
});
