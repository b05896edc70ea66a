import { createHash } from 'node:crypto';
import { JobName } from './queues';
import { JobSchedule, SCHEDULES, SCHEDULES_REVISION, schedulesOf } from './schedulers';

/**
 * SCHEDULES_REVISION orders builds during a rolling deploy (only the newest changes or removes
 * schedulers): a change to SCHEDULES without raising it would let an older build undo it. Changing
 * SCHEDULES? Raise SCHEDULES_REVISION and record the new list's digest here.
 */
const DIGEST_OF_REVISION: Record<number, string> = {
  1: 'bee9379fdf170a15833af2a33c0ed3f544b3615a6c7db9fa43f4c8b6077fc00c',
  // the payment orphan sweep (its interval PAYMENT_ORPHAN_SWEEP_INTERVAL_MS: schedulesOf)
  2: '290ce251f28ce77e100adfe2ec64caff6b1d382fda65ccd3aca07cd3793af131',
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

describe('schedulesOf', () => {
  const sweep = (schedules: readonly JobSchedule[]) =>
    schedules.find((s) => s.job === JobName.SweepPaymentOrphans);

  it('runs SCHEDULES, the payment orphan sweep every PAYMENT_ORPHAN_SWEEP_INTERVAL_MS', () => {
    expect(schedulesOf({ paymentOrphanSweepIntervalMs: 900_000 })).toEqual(SCHEDULES);
    const hourly = schedulesOf({ paymentOrphanSweepIntervalMs: 3_600_000 });
    expect(sweep(hourly)).toEqual({
      job: JobName.SweepPaymentOrphans,
      everyMs: 3_600_000,
      data: {},
    });
    expect(hourly.filter((s) => s.job !== JobName.SweepPaymentOrphans)).toEqual(
      SCHEDULES.filter((s) => s.job !== JobName.SweepPaymentOrphans),
    );
  });

  it('leaves the sweep out at 0 (its scheduler is then removed)', () => {
    const off = schedulesOf({ paymentOrphanSweepIntervalMs: 0 });
    expect(sweep(off)).toBeUndefined();
    expect(off).toHaveLength(SCHEDULES.length - 1);
  });
});
