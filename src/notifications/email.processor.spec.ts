import { DelayedError, type Job } from 'bullmq';
import { EMAIL_BUSY_RETRIES, EMAIL_BUSY_RETRY_MS } from './email-job';
import { EmailProcessor } from './email.processor';
import { EmailDeliveryBusyError, type EmailService } from './email.service';
import { mockOf } from '../../test/support/mocks';

const orderId = '0c8e4f2a-1111-4222-8333-944445555666';

function setup(data: Record<string, unknown>, error: Error) {
  const emails = mockOf<EmailService>({ send: jest.fn().mockRejectedValue(error) }, 'emails');
  const job = mockOf<Job>({
    name: 'email.send',
    data,
    updateData: jest.fn().mockResolvedValue(undefined),
    moveToDelayed: jest.fn().mockResolvedValue(undefined),
  }, 'job');
  const processor = new EmailProcessor(emails);
  return { processor, job, asJob: job };
}

describe('EmailProcessor', () => {
  it('a delivery busy with a live sender: back in the queue for seconds, no attempt spent', async () => {
    const { processor, job, asJob } = setup({ orderId, kind: 'cancellation' }, new EmailDeliveryBusyError('k'));
    const before = Date.now();
    await expect(processor.process(asJob, 'token-1')).rejects.toBeInstanceOf(DelayedError);
    expect(job.updateData).toHaveBeenCalledWith({ orderId, kind: 'cancellation', busyRetries: 1 });
    const [until, token] = job.moveToDelayed.mock.calls[0] as [number, string];
    expect(token).toBe('token-1');
    expect(until - before).toBeGreaterThanOrEqual(EMAIL_BUSY_RETRY_MS);
    expect(until - Date.now()).toBeLessThanOrEqual(EMAIL_BUSY_RETRY_MS);
  });

  it('only busy is waited out, and at most EMAIL_BUSY_RETRIES times; then, like any error, it is an attempt', async () => {
    const busy = new EmailDeliveryBusyError('k');
    const capped = setup({ orderId, kind: 'cancellation', busyRetries: EMAIL_BUSY_RETRIES }, busy);
    await expect(capped.processor.process(capped.asJob, 'token-1')).rejects.toBe(busy);
    expect(capped.job.moveToDelayed).not.toHaveBeenCalled();

    const down = new Error('connect ECONNREFUSED');
    const failing = setup({ orderId, kind: 'cancellation' }, down);
    await expect(failing.processor.process(failing.asJob, 'token-1')).rejects.toBe(down);
    expect(failing.job.moveToDelayed).not.toHaveBeenCalled();

    // the same job one wait earlier is put back (so the cap, not the error, made the difference)
    const waiting = setup({ orderId, kind: 'cancellation', busyRetries: EMAIL_BUSY_RETRIES - 1 }, busy);
    await expect(waiting.processor.process(waiting.asJob, 'token-1')).rejects.toBeInstanceOf(DelayedError);
    expect(waiting.job.updateData).toHaveBeenCalledWith(expect.objectContaining({ busyRetries: EMAIL_BUSY_RETRIES }));
  });
});
