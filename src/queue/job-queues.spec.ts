import type { Queue } from 'bullmq';
import { mockOf } from '../../test/support/mocks';
import { JobQueues } from './job-queues';
import { OnJob } from './on-job.decorator';
import { JOB_QUEUE, JobName, type JobOf, QUEUES, QueueName } from './queues';

function fakeQueues() {
  const queues = QUEUES.map((name) =>
    mockOf<Queue>(
      {
        name,
        add: jest.fn().mockResolvedValue({ id: 'j1' }),
        upsertJobScheduler: jest.fn().mockResolvedValue(undefined),
      },
      `queue ${name}`,
    ),
  );
  const byName = (name: QueueName) => queues[QUEUES.indexOf(name)];
  return { jobs: new JobQueues(queues), byName };
}

describe('JobQueues', () => {
  it("adds a job to its registry queue, under its name, with the caller's options", async () => {
    const { jobs, byName } = fakeQueues();
    await jobs.add(JobName.CancelPaymentIntent, { orderId: 'o1' }, { jobId: 'cancel-intent.o1' });
    expect(byName(QueueName.Payments).add).toHaveBeenCalledWith(
      JobName.CancelPaymentIntent,
      { orderId: 'o1' },
      { jobId: 'cancel-intent.o1' },
    );
    for (const other of QUEUES.filter((q) => q !== QueueName.Payments)) {
      expect(byName(other).add).not.toHaveBeenCalled();
    }
  });

  it('schedules a repeatable job on its queue, keyed by its name', async () => {
    const { jobs, byName } = fakeQueues();
    await jobs.schedule(JobName.PurgeOutbox, 60_000, {});
    expect(byName(JOB_QUEUE[JobName.PurgeOutbox]).upsertJobScheduler).toHaveBeenCalledWith(
      JobName.PurgeOutbox,
      { every: 60_000 },
      { name: JobName.PurgeOutbox, data: {} },
    );
  });

  it('a payload that does not fit its job does not compile', () => {
    const { jobs } = fakeQueues();
    // never run: the assertions are the @ts-expect-error lines (tsc fails if a line compiles)
    const typeTests = () => {
      // @ts-expect-error an order id is a string
      void jobs.add(JobName.ExpireReservation, { orderId: 42 });
      // @ts-expect-error the payload of another job
      void jobs.add(JobName.ProcessPaymentEvent, { orderId: 'o1' });
      // @ts-expect-error a missing field
      void jobs.add(JobName.SettleRefund, {});
      // @ts-expect-error an email without its kind
      void jobs.add(JobName.SendEmail, { orderId: 'o1' });
      // @ts-expect-error a job name that is not in the registry
      void jobs.add('orders.expire', { orderId: 'o1' });
      // @ts-expect-error data for a job that carries none
      void jobs.schedule(JobName.ReconcilePayments, 1000, { staleMs: 5 });

      class Handlers {
        // @ts-expect-error a handler whose parameter is not the job's payload
        @OnJob(JobName.ExpireReservation)
        async expire({ orderId }: { orderId: number }) {
          return orderId;
        }

        // @ts-expect-error a handler with a parameter of its own where the payload goes
        @OnJob(JobName.SweepExpiredReservations)
        async sweep(batch = 200) {
          return batch;
        }

        @OnJob(JobName.ExpireReservation)
        async typed(
          { orderId }: { orderId: string },
          job: JobOf<JobName.ExpireReservation>,
          token?: string,
        ) {
          return [orderId, job.name, token];
        }
      }
      return Handlers;
    };
    expect(typeof typeTests).toBe('function');
  });
});
