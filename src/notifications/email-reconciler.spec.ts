import { mockOf } from '../../test/support/mocks';
import type { JobQueues } from '../queue/job-queues';
import { MetricsService } from '../metrics/metrics.service';
import { JobName } from '../queue/queues';
import type { EmailDeliveryRepository, OwedEmail } from './email-delivery.repository';
import { EmailReconciler } from './email-reconciler';

const HOUR = 3_600_000;

describe('EmailReconciler: where a pass starts', () => {
  function setup(owedByPass: OwedEmail[][]) {
    let pass = -1;
    const starts = [
      Date.parse('2026-12-03T10:00:00Z'),
      Date.parse('2026-12-03T10:05:00Z'),
      Date.parse('2026-12-03T10:10:00Z'),
    ];
    const deliveries = mockOf<EmailDeliveryRepository>({
      databaseNow: async () => new Date(starts[++pass]),
      findUnsent: async (opts: { events: string }) =>
        opts.events === 'published' ? (owedByPass[pass] ?? []) : [],
    });
    // every owed email's job still waiting in the queue: left alone
    const jobs = mockOf<JobQueues>({
      find: async () => ({ getState: async () => 'waiting' }),
      connected: async () => true,
    });
    const reconciler = new EmailReconciler(deliveries, jobs, new MetricsService());
    const notBefore = (n: number) =>
      (
        deliveries.findUnsent.mock.calls.filter(
          ([o]) => (o as { events: string }).events === 'published',
        )[n][0] as { notBefore?: Date }
      ).notBefore;
    return { reconciler, notBefore, starts };
  }
  const owedAt = (at: number): OwedEmail => ({
    outboxId: 'o',
    eventAt: new Date(at),
    eventKey: new Date(at).toISOString(),
    orderId: 'x',
    kind: 'cancellation',
    ref: '',
  });

  it('reads the whole window once, then from where everything before was settled: an hour before the last pass began', async () => {
    const { reconciler, notBefore, starts } = setup([[], []]);
    await reconciler.reconcile();
    await reconciler.reconcile();
    expect(notBefore(0)).toBeUndefined(); // a fresh process: the whole window
    expect(notBefore(1)).toEqual(new Date(starts[0] - HOUR));
  });

  it('never past an email still owed: the next pass starts at the first one', async () => {
    const stillOwed = Date.parse('2026-12-01T08:00:00Z'); // two days ago, its job retrying
    const { reconciler, notBefore } = setup([[owedAt(stillOwed)], [owedAt(stillOwed)], []]);
    await reconciler.reconcile();
    await reconciler.reconcile();
    await reconciler.reconcile();
    expect(notBefore(1)).toEqual(new Date(stillOwed));
    expect(notBefore(2)).toEqual(new Date(stillOwed));
  });

  it('past an email left failed for the operator after its rounds (never tried again): it does not hold every pass back', async () => {
    const givenUp = Date.parse('2026-12-01T08:00:00Z');
    const { reconciler, notBefore, starts } = setup([[owedAt(givenUp)], [owedAt(givenUp)], []]);
    const jobs = reconciler['jobs'] as unknown as { find: () => Promise<unknown> };
    jobs.find = async () => ({
      getState: async () => 'failed',
      finishedOn: 1,
      name: JobName.SendEmail,
      data: { orderId: 'x', kind: 'cancellation', reconcilerRetries: 3, reconcilerRound: 0 },
      updateData: async () => undefined,
    });
    await reconciler.reconcile();
    await reconciler.reconcile();
    expect(notBefore(1)).toEqual(new Date(starts[0] - HOUR));
  });

  it('a pass whose queue is away fails and moves nothing: the next one starts where this one did', async () => {
    // (every owed email of the pass — two — whose job could not be looked at: the queue, not an email)
    const owed = [0, 1].map((i) => owedAt(Date.parse('2026-12-03T09:50:00Z') + i));
    const { reconciler, notBefore } = setup([[], owed, []]);
    await reconciler.reconcile();
    const jobs = reconciler['jobs'] as unknown as {
      find: () => Promise<unknown>;
      connected: () => Promise<boolean>;
    };
    jobs.find = () => Promise.reject(new Error('Redis down'));
    jobs.connected = async () => false;
    await expect(reconciler.reconcile()).rejects.toThrow('Redis down');
    await reconciler.reconcile();
    expect(notBefore(2)).toEqual(notBefore(1));
  });

  it('three owed emails in a row whose jobs cannot be looked at, after others that could, fail the pass: the queue went away', async () => {
    const owed = [0, 1, 2, 3].map((i) => owedAt(Date.parse('2026-12-03T09:50:00Z') + i));
    const { reconciler } = setup([owed]);
    const jobs = reconciler['jobs'] as unknown as {
      find: () => Promise<unknown>;
      connected: () => Promise<boolean>;
    };
    let asked = 0;
    jobs.find = async () => {
      if (asked++ === 0) return { getState: async () => 'waiting' };
      throw new Error('Redis down');
    };
    jobs.connected = async () => false;
    await expect(reconciler.reconcile()).rejects.toThrow('Redis down');
    expect(asked).toBe(4);
  });

  it('the only owed email, its job not to be looked at while the queue is up, fails no pass: the next starts at it', async () => {
    const poisonedAt = Date.parse('2026-12-01T08:00:00Z');
    const { reconciler, notBefore } = setup([[owedAt(poisonedAt)], [owedAt(poisonedAt)], []]);
    const jobs = reconciler['jobs'] as unknown as { find: () => Promise<unknown> };
    jobs.find = () => Promise.reject(new Error('Unexpected token in JSON'));
    await expect(reconciler.reconcile()).resolves.toBe(0);
    await expect(reconciler.reconcile()).resolves.toBe(0);
    expect(notBefore(1)).toEqual(new Date(poisonedAt));
  });

  it('one owed email whose job cannot be looked at holds back no other: the next ones are added again, and the next pass starts at it', async () => {
    const poisonedAt = Date.parse('2026-12-01T08:00:00Z');
    const poisoned = { ...owedAt(poisonedAt), orderId: 'poisoned' };
    const lost = { ...owedAt(poisonedAt + 60_000), orderId: 'lost' };
    const { reconciler, notBefore } = setup([[poisoned, lost], [poisoned, lost], []]);
    const jobs = reconciler['jobs'] as unknown as {
      find: (name: string, id: string) => Promise<unknown>;
      add: jest.Mock;
    };
    // its job record unreadable (stands for any error of that email alone); the other's job gone
    jobs.find = async (_name, id) => {
      if (id.includes('poisoned')) throw new Error('Unexpected token in JSON');
      return undefined;
    };
    jobs.add = jest.fn(async () => undefined);
    await expect(reconciler.reconcile()).resolves.toBe(1);
    expect(jobs.add.mock.calls.map(([, job]) => (job as { orderId: string }).orderId)).toEqual([
      'lost',
    ]);
    await reconciler.reconcile();
    expect(notBefore(1)).toEqual(new Date(poisonedAt));
  });
});
