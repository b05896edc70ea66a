import { PROCESSOR_METADATA, WORKER_METADATA } from '@nestjs/bullmq/dist/bull.constants';
import type { Job } from 'bullmq';
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
