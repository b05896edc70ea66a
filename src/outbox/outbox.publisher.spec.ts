import type { JobQueues } from '../queue/job-queues';
import { JobName } from '../queue/queues';
import type { OutboxRow } from './outbox-events';
import { OutboxPublisher } from './outbox.publisher';

describe('OutboxPublisher', () => {
  const setup = () => {
    const add = jest.fn().mockResolvedValue(undefined);
    const jobs = { add } as unknown as JobQueues;
    const clock = { now: () => new Date('2026-12-01T10:00:00Z') };
    return { add, publisher: new OutboxPublisher(jobs, clock) };
  };
  const row = (topic: string, payload: Record<string, unknown>): OutboxRow =>
    ({
      id: 'row-1',
      topic,
      aggregateId: null,
      payload,
      attempts: 0,
      ageMs: 0,
    }) as unknown as OutboxRow;

  it('turns a known topic into its job (the job id from the event)', async () => {
    const { add, publisher } = setup();
    await publisher.publish(row('payment.event', { eventId: 'evt_1' }));
    expect(add).toHaveBeenCalledWith(
      JobName.ProcessPaymentEvent,
      { eventId: 'evt_1' },
      { jobId: 'evt_1' },
    );
  });

  it('throws for a topic it does not know (a newer build wrote it): never marked published with nothing done', async () => {
    const { add, publisher } = setup();
    await expect(publisher.publish(row('order.shipped', { orderId: 'o-1' }))).rejects.toThrow(
      /unknown topic "order.shipped"/,
    );
    expect(add).not.toHaveBeenCalled();
  });
});
