import { PROCESSOR_METADATA, WORKER_METADATA } from '@nestjs/bullmq/dist/bull.constants';
import { Logger } from '@nestjs/common';
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

describe("QueueProcessor and its worker's own errors", () => {
  class EmailProcessor extends QueueProcessor {
    readonly queue = QueueName.Email;
  }
  class OrdersProcessor extends QueueProcessor {
    readonly queue = QueueName.Orders;
  }
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => {
    jest.useRealTimers();
    jest.restoreAllMocks();
  });

  it('logs the same error of the same queue at once, then at most once per 10 s, saying how many more came (a fetch loop against a Redis out of memory)', () => {
    const warn = jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    const handlers = mockOf<JobHandlers>({}, 'handlers');
    const email = new EmailProcessor(handlers);
    const orders = new OrdersProcessor(handlers);
    const oom = new Error("OOM command not allowed when used memory > 'maxmemory'.");
    const lines = () => warn.mock.calls.map((args) => args[0] as string);
    // BullMQ's fetch loop retries at once: thousands a second, each an 'error' event
    for (let i = 0; i < 4_000; i++) email.onWorkerError(oom);
    orders.onWorkerError(oom); // another queue: its own first line, at once
    new EmailProcessor(handlers).onWorkerError(new Error('UNBLOCKED')); // another message too
    expect(lines()).toEqual([
      `email worker: ${oom.message}`,
      `orders worker: ${oom.message}`,
      'email worker: UNBLOCKED',
    ]);
    for (let s = 0; s < 30; s++) {
      for (let i = 0; i < 2_500; i++) email.onWorkerError(oom);
      jest.advanceTimersByTime(1_000);
    }
    expect(lines().slice(3)).toEqual([
      `email worker: ${oom.message} (28999 more in 10 s)`,
      `email worker: ${oom.message} (25000 more in 10 s)`,
      `email worker: ${oom.message} (25000 more in 10 s)`,
    ]);
    // the loop stopped (Redis has memory again): nothing more, and the next error is logged at once
    jest.advanceTimersByTime(60_000);
    expect(lines()).toHaveLength(6);
    email.onWorkerError(oom);
    expect(lines()).toHaveLength(7);
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

describe('QueueProcessor and a failed attempt', () => {
  class OrdersProcessor extends QueueProcessor {
    readonly queue = QueueName.Orders;
  }
  afterEach(() => jest.restoreAllMocks());

  it('names the job by its id, queue and name in fields of their own, with the error (its stack through the serializer), and counts the attempts of a job added without `attempts` as one', () => {
    const lines: unknown[][] = [];
    for (const level of ['warn', 'error'] as const)
      jest
        .spyOn(Logger.prototype, level)
        .mockImplementation((...args: unknown[]) => void lines.push([level, ...args]));
    const processor = new OrdersProcessor(mockOf<JobHandlers>({}, 'handlers'));
    const boom = new Error('the provider timed out');
    const job = (attemptsMade: number, opts: Record<string, unknown>) =>
      ({ id: 'j-1', name: JobName.CancelPaymentIntent, attemptsMade, opts }) as unknown as Job;
    // as BullMQ stores a job added without `attempts`
    processor.onJobFailed(job(1, { attempts: 0 }), boom);
    processor.onJobFailed(job(1, { attempts: 3 }), boom);
    const fields = { jobId: 'j-1', queue: 'orders', job: JobName.CancelPaymentIntent, err: boom };
    expect(lines).toEqual([
      [
        'error',
        fields,
        `orders job ${JobName.CancelPaymentIntent} j-1 failed (attempt 1 of 1): the provider timed out; in the failed set, not retried`,
      ],
      [
        'warn',
        fields,
        `orders job ${JobName.CancelPaymentIntent} j-1 failed (attempt 1 of 3): the provider timed out; retried`,
      ],
    ]);
  });
});
