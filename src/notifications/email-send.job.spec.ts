import { DelayedError } from 'bullmq';
import { mockOf } from '../../test/support/mocks';
import type { AppConfig } from '../config/config';
import type { OrderRepository } from '../orders/order.repository';
import { JobName, type JobOf, type JobPayloads } from '../queue/queues';
import type { PaymentReader } from '../payments/payment-reader';
import type { UserRepository } from '../users/user.repository';
import type { CancellationLimits } from './cancellation-limits';
import type { EmailDeliveryRepository } from './email-delivery.repository';
import type { EmailDeliveryLocks } from './email-delivery-locks';
import { EMAIL_BUSY_RETRIES, EMAIL_BUSY_RETRY_MS } from './email-job';
import { EmailDeliveryBusyError, EmailService } from './email.service';
import type { MailTransport } from './mail-transport';

const orderId = '0c8e4f2a-1111-4222-8333-944445555666';

/** The `email.send` handler around a send that fails with `error` (the send itself is EmailService's spec). */
function setup(data: JobPayloads[JobName.SendEmail], error: Error) {
  const service = new EmailService(
    {} as EmailDeliveryRepository,
    {} as EmailDeliveryLocks,
    {} as OrderRepository,
    {} as UserRepository,
    {} as PaymentReader,
    {} as CancellationLimits,
    {} as MailTransport,
    { now: () => new Date() },
    { uuid: () => 'id' },
    {} as AppConfig,
  );
  jest.spyOn(service, 'send').mockRejectedValue(error);
  const job = mockOf<JobOf<JobName.SendEmail>>(
    {
      name: JobName.SendEmail,
      data,
      updateData: jest.fn().mockResolvedValue(undefined),
      moveToDelayed: jest.fn().mockResolvedValue(undefined),
    },
    'job',
  );
  const run = () => service.handleSendEmail(data, job, 'token-1');
  return { run, job };
}

describe('EmailService.handleSendEmail (the email.send job)', () => {
  it('a delivery busy with a live sender: back in the queue for seconds, no attempt spent', async () => {
    const { run, job } = setup({ orderId, kind: 'cancellation' }, new EmailDeliveryBusyError('k'));
    const before = Date.now();
    await expect(run()).rejects.toBeInstanceOf(DelayedError);
    expect(job.updateData).toHaveBeenCalledWith({ orderId, kind: 'cancellation', busyRetries: 1 });
    const [until, token] = job.moveToDelayed.mock.calls[0] as [number, string];
    expect(token).toBe('token-1');
    expect(until - before).toBeGreaterThanOrEqual(EMAIL_BUSY_RETRY_MS);
    expect(until - Date.now()).toBeLessThanOrEqual(EMAIL_BUSY_RETRY_MS);
  });

  it('only busy is waited out, and at most EMAIL_BUSY_RETRIES times; then, like any error, it is an attempt', async () => {
    const busy = new EmailDeliveryBusyError('k');
    const capped = setup({ orderId, kind: 'cancellation', busyRetries: EMAIL_BUSY_RETRIES }, busy);
    await expect(capped.run()).rejects.toBe(busy);
    expect(capped.job.moveToDelayed).not.toHaveBeenCalled();
    // the attempt spent, the count starts again: the next attempt waits for a twin as the first did
    expect(capped.job.updateData).toHaveBeenCalledWith({
      orderId,
      kind: 'cancellation',
      busyRetries: 0,
    });

    const down = new Error('connect ECONNREFUSED');
    const failing = setup({ orderId, kind: 'cancellation' }, down);
    await expect(failing.run()).rejects.toBe(down);
    expect(failing.job.moveToDelayed).not.toHaveBeenCalled();
    expect(failing.job.updateData).not.toHaveBeenCalled(); // (nothing to start again)
    // another error after some waits: an attempt, and the waits start again
    const after = setup({ orderId, kind: 'cancellation', busyRetries: 5 }, down);
    await expect(after.run()).rejects.toBe(down);
    expect(after.job.updateData).toHaveBeenCalledWith({
      orderId,
      kind: 'cancellation',
      busyRetries: 0,
    });

    // the same job one wait earlier is put back (so the cap, not the error, made the difference)
    const waiting = setup(
      { orderId, kind: 'cancellation', busyRetries: EMAIL_BUSY_RETRIES - 1 },
      busy,
    );
    await expect(waiting.run()).rejects.toBeInstanceOf(DelayedError);
    expect(waiting.job.updateData).toHaveBeenCalledWith(
      expect.objectContaining({ busyRetries: EMAIL_BUSY_RETRIES }),
    );
  });
});
