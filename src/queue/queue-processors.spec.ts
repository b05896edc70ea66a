import { PROCESSOR_METADATA, WORKER_METADATA } from '@nestjs/bullmq/dist/bull.constants';
import { DelayedError, type Job } from 'bullmq';
import { mockOf } from '../../test/support/mocks';
import type { JobHandlers } from './job-handlers';
import { JobName, QUEUES, QueueName } from './queues';
import { QueueProcessor, queueProcessors } from './queue-processors';
import { WORKER_OPTIONS } from './worker-options';

describe('QueueProcessor', () => {
  it("refuses a job that is not its queue's", async () => {
    const handlers = mockOf<JobHandlers>(
      { process: jest.fn().mockResolvedValue('done') },
      'handlers',
    );
    class OrdersProcessor extends QueueProcessor {
      readonly queue = QueueName.Orders;
    }
    const processor = new OrdersProcessor(handlers);
    await expect(processor.process({ name: JobName.SendEmail, data: {} } as Job)).rejects.toThrow(
      `the orders queue has no job ${JobName.SendEmail}`,
    );
    expect(handlers.process).not.toHaveBeenCalled();
    const job = { name: JobName.SweepExpiredReservations, data: {} } as Job;
    expect(await processor.process(job, 'token')).toBe('done');
    expect(handlers.process).toHaveBeenCalledWith(job, 'token');
  });
});

describe('QueueProcessor and a job of a newer build (a rolling deploy)', () => {
  class OrdersProcessor extends QueueProcessor {
    readonly queue = QueueName.Orders;
  }

  it('puts a job whose name it does not know back for a minute, spending no attempt', async () => {
    const handlers = mockOf<JobHandlers>({ process: jest.fn() }, 'handlers');
    const moveToDelayed = jest.fn().mockResolvedValue(undefined);
    const job = {
      name: 'orders.a-newer-job',
      data: {},
      timestamp: Date.now() - 5_000,
      moveToDelayed,
    } as unknown as Job;
    const before = Date.now();
    await expect(new OrdersProcessor(handlers).process(job, 'token')).rejects.toBeInstanceOf(
      DelayedError,
    );
    expect(moveToDelayed).toHaveBeenCalledWith(expect.any(Number), 'token');
    const at = moveToDelayed.mock.calls[0][0] as number;
    expect(at).toBeGreaterThanOrEqual(before + 60_000);
    expect(at).toBeLessThanOrEqual(Date.now() + 60_000);
    expect(handlers.process).not.toHaveBeenCalled();
  });

  it('refuses it once it is over an hour old (no deploy takes that long): attempts, then the failed set', async () => {
    const handlers = mockOf<JobHandlers>({ process: jest.fn() }, 'handlers');
    const moveToDelayed = jest.fn();
    const job = {
      name: 'orders.retired-job',
      data: {},
      timestamp: Date.now() - 61 * 60_000,
      moveToDelayed,
    } as unknown as Job;
    await expect(new OrdersProcessor(handlers).process(job, 'token')).rejects.toThrow(
      'the orders queue has no job orders.retired-job',
    );
    expect(moveToDelayed).not.toHaveBeenCalled();
  });
});

describe('queueProcessors', () => {
  it("one processor per registry queue, each with WORKER_OPTIONS plus the queue's own", () => {
    const backoffStrategy = () => 1_000;
    const classes = queueProcessors({ [QueueName.Payments]: { settings: { backoffStrategy } } });
    const bound = classes.map((cls) => ({
      name: cls.name,
      queue: (Reflect.getMetadata(PROCESSOR_METADATA, cls) as { name: QueueName }).name,
      options: Reflect.getMetadata(WORKER_METADATA, cls) as object,
    }));
    expect(bound.map((b) => b.queue)).toEqual([...QUEUES]);
    expect(bound.find((b) => b.queue === QueueName.Payments)).toEqual({
      name: 'PaymentsQueueProcessor',
      queue: QueueName.Payments,
      options: { ...WORKER_OPTIONS, settings: { backoffStrategy } },
    });
    expect(bound.find((b) => b.queue === QueueName.Email)?.options).toEqual(WORKER_OPTIONS);
  });
});
