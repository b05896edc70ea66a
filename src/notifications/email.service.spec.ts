import { Logger } from '@nestjs/common';
import type { AppConfig } from '../config/config';
import type { OrderRepository } from '../orders/order.repository';
import type { OrderWithHistory } from '../orders/order.model';
import type { PaymentReader, RefundForEmail } from '../payments/payment-reader';
import type { UserRepository } from '../users/user.repository';
import type { CancellationLimits } from './cancellation-limits';
import type { EmailDeliveryRepository } from './email-delivery.repository';
import type { EmailDeliveryEntity } from './entities/email-delivery.entity';
import type { EmailDeliveryLocks } from './email-delivery-locks';
import {
  EmailDeliveryBusyError,
  EmailService,
  isPermanentRejection,
  mailDomain,
} from './email.service';
import { mockOf } from '../../test/support/mocks';
import { UNANSWERED_HANDOVER } from './mail-transport';

const NOW = new Date('2025-01-01T10:00:00Z');
const orderId = '0c8e4f2a-1111-4222-8333-944445555666';
const order: OrderWithHistory = {
  id: orderId,
  userId: 'u1',
  status: 'PAID',
  cancellationReason: null,
  currency: 'INR',
  totalAmount: 24_900,
  refundedAmount: 0,
  reservationExpiresAt: null,
  createdAt: NOW,
  updatedAt: NOW,
  history: [],
  items: [
    {
      productId: 'p',
      sku: 's',
      name: 'Tea',
      quantity: 1,
      unitPriceAmount: 24_900,
      lineTotalAmount: 24_900,
    },
  ],
};

const delivery = (status: EmailDeliveryEntity['status']): EmailDeliveryEntity => ({
  id: 'd1',
  orderId,
  kind: 'payment_receipt',
  ref: '',
  recipient: 'asha@example.com',
  inbox: 'asha@example.com',
  status,
  attempts: 1,
  messageId: `<${orderId}.payment_receipt@shop.example>`,
  unprovenAt: null,
  claimedAt: status === 'sending' ? NOW : null,
  sentAt: status === 'sent' ? NOW : null,
  lastError: null,
  createdAt: NOW,
  updatedAt: NOW,
});

function setup() {
  const deliveries = mockOf<EmailDeliveryRepository>(
    {
      claim: jest.fn().mockResolvedValue({ id: 'd1', attempt: 1 }),
      find: jest.fn().mockResolvedValue(null),
      markSent: jest.fn().mockResolvedValue(true),
      release: jest.fn().mockResolvedValue(undefined),
    },
    'deliveries',
  );
  const cancellations = mockOf<CancellationLimits>(
    { suppressed: jest.fn().mockResolvedValue(false) },
    'cancellations',
  );
  const payments = mockOf<PaymentReader>(
    { findRefund: jest.fn().mockResolvedValue(null) },
    'payments',
  );
  const orders = mockOf<OrderRepository>(
    { findById: jest.fn().mockResolvedValue(order) },
    'orders',
  );
  const users = mockOf<UserRepository>(
    {
      findById: jest.fn().mockResolvedValue({ id: 'u1', email: 'asha@example.com', name: 'Asha' }),
    },
    'users',
  );
  const transport = { send: jest.fn().mockResolvedValue(undefined) };
  const hold = { held: true, release: jest.fn().mockResolvedValue(undefined) };
  const locks = mockOf<EmailDeliveryLocks>({ tryHold: jest.fn().mockResolvedValue(hold) }, 'locks');
  const config = {
    mail: { from: 'Shop <orders@shop.example>', outboxDir: 'var/mail' },
  } as AppConfig;
  const service = new EmailService(
    deliveries,
    locks,
    orders,
    users,
    payments,
    cancellations,
    transport,
    { now: () => NOW },
    { uuid: () => 'new-id' },
    config,
  );
  return { service, deliveries, orders, users, payments, transport, locks, hold };
}

describe('EmailService', () => {
  beforeAll(() => Logger.overrideLogger(false)); // failures are logged on purpose

  it('takes the lock, claims the delivery before sending, marks it sent, then lets go', async () => {
    const { service, deliveries, transport, locks, hold } = setup();
    expect(await service.send({ orderId, kind: 'payment_receipt' })).toBe('sent');
    expect(deliveries.claim).toHaveBeenCalledWith({
      id: 'new-id',
      orderId,
      kind: 'payment_receipt',
      ref: '',
      recipient: 'asha@example.com',
      messageId: `<${orderId}.payment_receipt@shop.example>`,
      now: NOW,
    });
    expect(locks.tryHold).toHaveBeenCalledWith(`${orderId}.payment_receipt`);
    expect(locks.tryHold.mock.invocationCallOrder[0]).toBeLessThan(
      deliveries.claim.mock.invocationCallOrder[0],
    );
    expect(transport.send).toHaveBeenCalledWith(
      expect.objectContaining({
        to: 'asha@example.com',
        from: 'Shop <orders@shop.example>',
        messageId: `<${orderId}.payment_receipt@shop.example>`,
        subject: 'Receipt for order 0C8E4F2A',
      }),
    );
    expect(deliveries.claim.mock.invocationCallOrder[0]).toBeLessThan(
      transport.send.mock.invocationCallOrder[0],
    );
    expect(deliveries.markSent).toHaveBeenCalledWith('d1', 1, NOW);
    expect(hold.release.mock.invocationCallOrder[0]).toBeGreaterThan(
      deliveries.markSent.mock.invocationCallOrder[0],
    );
  });

  it('never sends a delivery that is already sent', async () => {
    const { service, deliveries, transport, hold } = setup();
    deliveries.claim.mockResolvedValue(null);
    expect(await service.send({ orderId, kind: 'payment_receipt' })).toBe('already-sent');
    expect(transport.send).not.toHaveBeenCalled();
    expect(hold.release).toHaveBeenCalled();
  });

  it('refuses (to be retried) while another attempt holds the lock, without claiming', async () => {
    const { service, deliveries, transport, locks } = setup();
    locks.tryHold.mockResolvedValue(null);
    deliveries.find.mockResolvedValue(delivery('sending'));
    await expect(service.send({ orderId, kind: 'payment_receipt' })).rejects.toBeInstanceOf(
      EmailDeliveryBusyError,
    );
    expect(deliveries.claim).not.toHaveBeenCalled();
    expect(transport.send).not.toHaveBeenCalled();
  });

  it('while the lock is held elsewhere, a delivery already sent is just that', async () => {
    const { service, deliveries, transport, locks } = setup();
    locks.tryHold.mockResolvedValue(null);
    deliveries.find.mockResolvedValue(delivery('sent'));
    expect(await service.send({ orderId, kind: 'payment_receipt' })).toBe('already-sent');
    expect(transport.send).not.toHaveBeenCalled();
  });

  it('does not send once the lock session has ended under it (releases the claim, rethrows)', async () => {
    const { service, deliveries, transport, hold } = setup();
    hold.held = false;
    await expect(service.send({ orderId, kind: 'payment_receipt' })).rejects.toThrow(
      'lost the lock',
    );
    expect(transport.send).not.toHaveBeenCalled();
    expect(deliveries.release).toHaveBeenCalled();
    expect(hold.release).toHaveBeenCalled();
  });

  it('records the error and releases its own claim when the send fails, then rethrows', async () => {
    const { service, deliveries, transport } = setup();
    deliveries.claim.mockResolvedValue({ id: 'd1', attempt: 3 });
    transport.send.mockRejectedValue(new Error('connect ECONNREFUSED'));
    await expect(service.send({ orderId, kind: 'payment_receipt' })).rejects.toThrow(
      'ECONNREFUSED',
    );
    expect(deliveries.release).toHaveBeenCalledWith('d1', 3, 'connect ECONNREFUSED', NOW);
    expect(deliveries.markSent).not.toHaveBeenCalled();
  });

  it('fails the job without the address a temporary refusal quotes (the job record is kept in Redis)', async () => {
    const { service, deliveries, transport } = setup();
    deliveries.claim.mockResolvedValue({ id: 'd1', attempt: 2 });
    transport.send.mockRejectedValue(
      Object.assign(
        new Error(
          "Can't send mail - all recipients were rejected: 450 4.2.0 <alice@example.com>: Recipient address rejected: Greylisted",
        ),
        { responseCode: 450 },
      ),
    );
    const failure = await service.send({ orderId, kind: 'payment_receipt' }).catch((e: Error) => e);
    expect(failure).toBeInstanceOf(Error);
    expect((failure as Error).message).toMatch(/Greylisted/);
    expect((failure as Error).message).not.toMatch(/@|alice/);
    expect(deliveries.release.mock.calls[0][2]).not.toMatch(/@|alice/);
  });

  it("leaves no part of an address out that holds the other characters a local part may ('+!#$%&*/=?^`{|}~)", async () => {
    const { service, deliveries, transport } = setup();
    deliveries.claim.mockResolvedValue({ id: 'd1', attempt: 2 });
    const address = "mary.o'neil+shop!#$%&*/=?^`{|}~@example.com";
    transport.send.mockRejectedValue(
      Object.assign(
        new Error(`450 4.2.1 <${address}>: Recipient address rejected: Try again later`),
        { responseCode: 450 },
      ),
    );
    const failure = (await service
      .send({ orderId, kind: 'payment_receipt' })
      .catch((e: Error) => e)) as Error;
    expect(failure.message).toMatch(
      /: 450 4\.2\.1 <\[address\]>: Recipient address rejected: Try again later$/,
    );
    expect(deliveries.release.mock.calls[0][2]).toBe(
      '450 4.2.1 <[address]>: Recipient address rejected: Try again later',
    );
  });

  it('rethrows the send error even when releasing the claim fails too', async () => {
    const { service, deliveries, transport } = setup();
    transport.send.mockRejectedValue(new Error('smtp down'));
    deliveries.release.mockRejectedValue(new Error('db down'));
    await expect(service.send({ orderId, kind: 'payment_receipt' })).rejects.toThrow('smtp down');
  });

  it('lets go of the lock when the send fails', async () => {
    const { service, transport, hold } = setup();
    transport.send.mockRejectedValue(new Error('smtp down'));
    await expect(service.send({ orderId, kind: 'payment_receipt' })).rejects.toThrow('smtp down');
    expect(hold.release).toHaveBeenCalledTimes(1);
  });

  it('retries the sent record after the send, never the send, until it commits', async () => {
    const { service, deliveries, transport } = setup();
    deliveries.markSent
      .mockRejectedValueOnce(new Error('Connection terminated unexpectedly'))
      .mockRejectedValueOnce(new Error('connect ECONNREFUSED'))
      .mockResolvedValue(true);
    expect(await service.send({ orderId, kind: 'cancellation' })).toBe('sent');
    expect(transport.send).toHaveBeenCalledTimes(1);
    expect(deliveries.markSent).toHaveBeenCalledTimes(3);
    expect(deliveries.release).not.toHaveBeenCalled();
  });

  it('taking over an abandoned claim, records what the transport already delivered instead of resending', async () => {
    const { service, deliveries, transport } = setup();
    deliveries.claim.mockResolvedValue({ id: 'd1', attempt: 2 });
    const delivered = Object.assign(transport, {
      alreadyDelivered: jest.fn().mockResolvedValue(true),
    });
    expect(await service.send({ orderId, kind: 'cancellation' })).toBe('already-sent');
    expect(delivered.alreadyDelivered).toHaveBeenCalledWith(
      expect.objectContaining({ messageId: `<${orderId}.cancellation@shop.example>` }),
    );
    expect(transport.send).not.toHaveBeenCalled();
    expect(deliveries.markSent).toHaveBeenCalledWith('d1', 2, NOW);
  });

  it('taking over, when the record of an earlier delivery cannot be read, gives the claim back and fails the attempt: never sends on a guess', async () => {
    const { service, deliveries, transport, hold } = setup();
    deliveries.claim.mockResolvedValue({ id: 'd1', attempt: 2 });
    Object.assign(transport, {
      alreadyDelivered: jest.fn().mockRejectedValue(new Error('Stream is not writeable')),
    });
    await expect(service.send({ orderId, kind: 'cancellation' })).rejects.toThrow(
      /could not be read/,
    );
    expect(transport.send).not.toHaveBeenCalled();
    expect(deliveries.markSent).not.toHaveBeenCalled();
    expect(deliveries.release).toHaveBeenCalledWith(
      'd1',
      2,
      expect.stringMatching(/could not be read/),
      NOW,
    );
    expect(hold.release).toHaveBeenCalledTimes(1);
  });

  it('tells the transport its record may go only once this attempt recorded the delivery (not when another took it over)', async () => {
    const { service, deliveries, transport } = setup();
    const recorded = jest.fn().mockResolvedValue(undefined);
    Object.assign(transport, { recorded });
    expect(await service.send({ orderId, kind: 'cancellation' })).toBe('sent');
    expect(recorded).toHaveBeenCalledTimes(1);
    // this attempt's claim was taken over while it recorded (its lock session dropped): the
    // other attempt still needs the transport's record to know the message went out
    deliveries.markSent.mockResolvedValueOnce(false);
    expect(await service.send({ orderId, kind: 'cancellation' })).toBe('sent');
    expect(recorded).toHaveBeenCalledTimes(1);
    expect(transport.send).toHaveBeenCalledTimes(2);
  });

  it('skips an order that is gone, without claiming', async () => {
    const { service, deliveries, orders, transport } = setup();
    orders.findById.mockResolvedValue(null);
    expect(await service.send({ orderId, kind: 'order_confirmation' })).toBe('skipped');
    expect(deliveries.claim).not.toHaveBeenCalled();
    expect(transport.send).not.toHaveBeenCalled();
  });

  it('reads the refunded amount from the refund and keys the delivery by refund', async () => {
    const { service, deliveries, payments, transport } = setup();
    payments.findRefund.mockResolvedValue({
      id: 'r1',
      orderId,
      amount: 10_000,
      currency: 'INR',
      status: 'succeeded',
      failure: null,
    });
    expect(await service.send({ orderId, kind: 'refund', refundId: 'r1' })).toBe('sent');
    expect(deliveries.claim).toHaveBeenCalledWith(
      expect.objectContaining({ kind: 'refund', ref: 'r1' }),
    );
    expect(transport.send).toHaveBeenCalledWith(
      expect.objectContaining({ subject: 'Refund of INR 100.00 for order 0C8E4F2A' }),
    );
  });

  it("skips a refund that is missing, failed or someone else's", async () => {
    const { service, payments, transport } = setup();
    for (const refund of [
      null,
      { id: 'r1', orderId, amount: 1, currency: 'INR', status: 'failed', failure: 'declined' },
      {
        id: 'r1',
        orderId: 'other',
        amount: 1,
        currency: 'INR',
        status: 'succeeded',
        failure: null,
      },
    ] satisfies (RefundForEmail | null)[]) {
      payments.findRefund.mockResolvedValue(refund);
      expect(await service.send({ orderId, kind: 'refund', refundId: 'r1' })).toBe('skipped');
    }
    expect(await service.send({ orderId, kind: 'refund' })).toBe('skipped');
    expect(transport.send).not.toHaveBeenCalled();
  });

  describe('a refund the provider reversed', () => {
    const reversed: RefundForEmail = {
      id: 'r1',
      orderId,
      amount: 10_000,
      currency: 'INR',
      status: 'failed',
      failure: 'reversed_at_provider',
    };
    const job = { orderId, kind: 'refund_reversed', refundId: 'r1' } as const;
    const refundEmail = (status: string) => ({ status }) as EmailDeliveryEntity;

    it("is told once its refund's email went out, under that email's lock, keyed by refund", async () => {
      const { service, deliveries, payments, transport, locks, hold } = setup();
      payments.findRefund.mockResolvedValue(reversed);
      deliveries.find.mockImplementation(async (_o: string, kind: string) =>
        kind === 'refund' ? refundEmail('sent') : null,
      );
      expect(await service.send(job)).toBe('sent');
      expect(locks.tryHold).toHaveBeenCalledWith(`${orderId}.refund.r1`);
      expect(deliveries.claim).toHaveBeenCalledWith(
        expect.objectContaining({ kind: 'refund_reversed', ref: 'r1' }),
      );
      expect(transport.send).toHaveBeenCalledWith(
        expect.objectContaining({
          subject: 'Refund of INR 100.00 for order 0C8E4F2A did not reach you',
          messageId: `<${orderId}.refund_reversed.r1@shop.example>`,
        }),
      );
      expect(hold.release).toHaveBeenCalledTimes(2); // its own lock and the refund email's
    });

    it("is recorded suppressed, never sent, when the refund's email never went out — one not yet claimed is refused for good", async () => {
      for (const before of [null, 'rejected', 'suppressed']) {
        const { service, deliveries, payments, transport } = setup();
        payments.findRefund.mockResolvedValue(reversed);
        const suppressUnclaimed = jest.fn().mockResolvedValue(refundEmail('suppressed'));
        const markSuppressed = jest.fn().mockResolvedValue(undefined);
        Object.assign(deliveries, { suppressUnclaimed, markSuppressed });
        deliveries.find.mockImplementation(async (_o: string, kind: string) =>
          kind === 'refund' && before ? refundEmail(before) : null,
        );
        expect(await service.send(job)).toBe('skipped');
        expect(transport.send).not.toHaveBeenCalled();
        expect(markSuppressed).toHaveBeenCalledWith(
          'd1',
          1,
          `its refund's email was never sent (${before ?? 'suppressed'})`,
          NOW,
        );
        if (before) expect(suppressUnclaimed).not.toHaveBeenCalled();
        else
          expect(suppressUnclaimed).toHaveBeenCalledWith(
            expect.objectContaining({
              kind: 'refund',
              ref: 'r1',
              messageId: `<${orderId}.refund.r1@shop.example>`,
            }),
          );
      }
    });

    it("waits for the refund's email being sent right now (busy), claiming nothing", async () => {
      const { service, deliveries, payments, transport, locks, hold } = setup();
      payments.findRefund.mockResolvedValue(reversed);
      locks.tryHold.mockImplementation(async (key: string) =>
        key === `${orderId}.refund.r1` ? null : hold,
      );
      await expect(service.send(job)).rejects.toBeInstanceOf(EmailDeliveryBusyError);
      expect(deliveries.claim).not.toHaveBeenCalled();
      expect(transport.send).not.toHaveBeenCalled();
    });

    it("settles a refund's email left sending (its own job skips a failed refund): one claimed moments ago is waited for; else sent if the transport delivered it, suppressed if not — the reversal told unless a failed attempt gave it back; a transport that cannot say fails the attempt", async () => {
      const minutesAgo = (m: number) => new Date(NOW.getTime() - m * 60_000);
      const cases = [
        { claimedAt: minutesAgo(1), lastError: null, delivered: false, outcome: 'busy' },
        { claimedAt: minutesAgo(12), lastError: null, delivered: true, outcome: 'sent' },
        { claimedAt: minutesAgo(12), lastError: null, delivered: false, outcome: 'sent' },
        { claimedAt: null, lastError: '451 try later', delivered: true, outcome: 'sent' },
        { claimedAt: null, lastError: '451 try later', delivered: false, outcome: 'skipped' },
        {
          claimedAt: null,
          lastError: `${UNANSWERED_HANDOVER}: socket closed`,
          delivered: false,
          outcome: 'sent',
        },
        // an earlier attempt's unanswered handover, its error overwritten by a later failed one's
        {
          claimedAt: null,
          lastError: '451 try later',
          delivered: false,
          handed: true,
          outcome: 'sent',
        },
        { claimedAt: null, lastError: null, delivered: 'unreadable', outcome: 'redis away' },
      ] as const;
      for (const c of cases) {
        const { service, deliveries, payments, transport } = setup();
        payments.findRefund.mockResolvedValue(reversed);
        const left = { id: 'd0', attempts: 3, status: 'sending', ...c, messageId: '<m>' };
        deliveries.find.mockImplementation(async (_o: string, kind: string) =>
          kind === 'refund' ? (left as unknown as EmailDeliveryEntity) : null,
        );
        const markSuppressed = jest.fn().mockResolvedValue(true);
        const alreadyDelivered = jest.fn(async () => {
          if (c.delivered === 'unreadable') throw new Error('redis away');
          return c.delivered;
        });
        Object.assign(deliveries, { markSuppressed });
        const handedOver = jest.fn().mockResolvedValue('handed' in c);
        Object.assign(transport, { alreadyDelivered, handedOver });
        const outcome = await service.send(job).catch((err: Error) => err);
        if (c.outcome === 'busy') expect(outcome).toBeInstanceOf(EmailDeliveryBusyError);
        else if (c.outcome === 'redis away')
          expect(outcome).toMatchObject({ message: 'redis away' });
        else expect([c, outcome]).toEqual([c, c.outcome]);
        if (c.outcome === 'busy' || c.outcome === 'redis away') {
          expect(deliveries.claim).not.toHaveBeenCalled();
          expect(markSuppressed).not.toHaveBeenCalled();
          continue;
        }
        expect(alreadyDelivered).toHaveBeenCalledWith(
          expect.objectContaining({ key: `${orderId}.refund.r1` }),
        );
        if (c.delivered) expect(deliveries.markSent).toHaveBeenCalledWith('d0', 3, NOW);
        else
          expect(markSuppressed).toHaveBeenCalledWith(
            'd0',
            3,
            expect.stringMatching(/reversed/),
            NOW,
          );
        expect(transport.send).toHaveBeenCalledTimes(c.outcome === 'sent' ? 1 : 0); // the reversal
      }
    });

    it("a refund's email recorded sent between the look and the suppression (an attempt that lost its lock) has the reversal told", async () => {
      const { service, deliveries, payments, transport } = setup();
      payments.findRefund.mockResolvedValue(reversed);
      const left = {
        id: 'd0',
        orderId,
        ref: 'r1',
        attempts: 1,
        status: 'sending',
        claimedAt: null,
        lastError: null,
      };
      deliveries.find.mockImplementation(async (_o: string, kind: string) =>
        kind !== 'refund'
          ? null
          : ((deliveries.find.mock.calls.filter(([, k]) => k === 'refund').length > 1
              ? { ...left, status: 'sent' }
              : left) as unknown as EmailDeliveryEntity),
      );
      Object.assign(deliveries, { markSuppressed: jest.fn().mockResolvedValue(false) });
      Object.assign(transport, { alreadyDelivered: jest.fn().mockResolvedValue(false) });
      expect(await service.send(job)).toBe('sent');
      expect(transport.send).toHaveBeenCalledTimes(1);
      expect(deliveries.find).toHaveBeenLastCalledWith(orderId, 'refund', 'r1');
    });

    it('skips a refund that was not reversed (succeeded, or failed otherwise)', async () => {
      const { service, payments, transport } = setup();
      for (const refund of [
        { ...reversed, status: 'succeeded', failure: null },
        { ...reversed, failure: 'declined' },
      ] satisfies RefundForEmail[]) {
        payments.findRefund.mockResolvedValue(refund);
        expect(await service.send(job)).toBe('skipped');
      }
      expect(transport.send).not.toHaveBeenCalled();
    });
  });

  it('derives the Message-ID domain from the sender address', () => {
    expect(mailDomain('Shop <orders@shop.example>')).toBe('shop.example');
    expect(mailDomain('orders@mail.example.org')).toBe('mail.example.org');
    expect(mailDomain('no address')).toBe('shop.local');
  });
});

describe("isPermanentRejection (a bounce for good, or the shop's own problem?)", () => {
  const refusal = (command: string, response: string, code = 'EENVELOPE') => ({
    code,
    command,
    response,
    responseCode: Number(/^\d+/.exec(response)?.[0]),
  });

  it('is final for a bad address at RCPT TO only', () => {
    expect(
      isPermanentRejection(
        refusal('RCPT TO', '550 5.1.1 <x@y.z>: Recipient address rejected: User unknown'),
      ),
    ).toBe(true);
    expect(
      isPermanentRejection(
        refusal('RCPT TO', '550 Requested action not taken: mailbox unavailable'),
      ),
    ).toBe(true);
    expect(isPermanentRejection(refusal('RCPT TO', '553 5.1.3 Bad recipient address syntax'))).toBe(
      true,
    );
    expect(
      isPermanentRejection(
        refusal('RCPT TO', '550 5.5.0 Requested action not taken: mailbox unavailable'),
      ),
    ).toBe(true);
    // an address in the reply is not its words ("separate" holds "rate")
    expect(isPermanentRejection(refusal('RCPT TO', '550 <kate@separate.com>: user unknown'))).toBe(
      true,
    );
  });

  it('reads the enhanced status right after the reply code, not a number like it further on', () => {
    expect(
      isPermanentRejection(
        refusal('RCPT TO', '550 5.7.1 rejected by 10.5.1.20: relay access denied'),
      ),
    ).toBe(false);
    expect(
      isPermanentRejection(
        refusal('RCPT TO', '550-5.1.1 The email account that you tried to reach does not exist'),
      ),
    ).toBe(true);
  });

  it("knows the replies that are about the shop's own sending, whatever their shape", () => {
    // qmail's status at the end; a relay refusal is not the customer's mailbox
    expect(
      isPermanentRejection(
        refusal('RCPT TO', "553 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)"),
      ),
    ).toBe(false);
    // Postfix checks the sender at RCPT TO: 5.1.8 is the shop's address, not the customer's
    expect(
      isPermanentRejection(
        refusal(
          'RCPT TO',
          '550 5.1.8 <orders@shop.example>: Sender address rejected: Domain not found',
        ),
      ),
    ).toBe(false);
    expect(
      isPermanentRejection(refusal('RCPT TO', '550 5.1.7 Bad sender mailbox address syntax')),
    ).toBe(false);
    // qmail's own bounce of a missing mailbox stays final
    expect(
      isPermanentRejection(refusal('RCPT TO', '550 sorry, no mailbox here by that name. (#5.1.1)')),
    ).toBe(true);
    // Exchange Online refusing a mailbox its directory does not have
    expect(
      isPermanentRejection(
        refusal('RCPT TO', '550 5.4.1 Recipient address rejected: Access denied. AS(201806281)'),
      ),
    ).toBe(true);
    expect(isPermanentRejection(refusal('RCPT TO', '550 5.4.1 Relay Access Denied'))).toBe(false);
  });

  it('is final for an internationalized address a server without SMTPUTF8 cannot take (each retry is sent and refused alike)', () => {
    for (const response of [
      '553 5.6.7 Must declare SMTPUTF8 to send unicode address',
      '550 5.6.7 Non-ASCII addresses are not permitted for that recipient',
      '555 SMTPUTF8 is required, but was not offered',
    ]) {
      expect([response, isPermanentRejection(refusal('RCPT TO', response))]).toEqual([
        response,
        true,
      ]);
    }
    // (a 4xx is never final, and the sender's own refusals stay the shop's problem)
    expect(isPermanentRejection(refusal('RCPT TO', '450 4.6.7 SMTPUTF8 not available now'))).toBe(
      false,
    );
    expect(
      isPermanentRejection(refusal('MAIL FROM', '553 5.6.7 Must declare SMTPUTF8', 'EENVELOPE')),
    ).toBe(false);
  });

  it('is not final for what concerns the sender, a policy or a quota, nor for a 4xx', () => {
    for (const [command, response, code] of [
      ['MAIL FROM', '530 5.7.0 Authentication required'],
      ['RCPT TO', '550 5.7.1 Relaying denied'],
      ['RCPT TO', '550 Relay not permitted'],
      ['RCPT TO', '550 5.4.5 Daily sending quota exceeded'],
      ['DATA', '554 Message rejected: Email address is not verified', 'EMESSAGE'],
      ['RCPT TO', '450 4.2.1 Mailbox busy'],
    ] as const) {
      expect([response, isPermanentRejection(refusal(command, response, code))]).toEqual([
        response,
        false,
      ]);
    }
    expect(isPermanentRejection(new Error('ECONNREFUSED'))).toBe(false);
  });
});
