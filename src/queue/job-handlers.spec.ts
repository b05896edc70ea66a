import { BullRegistrar } from '@nestjs/bullmq';
import { Injectable, Logger, type Provider, type Type } from '@nestjs/common';
import { DiscoveryModule } from '@nestjs/core';
import { Test } from '@nestjs/testing';
import type { Job } from 'bullmq';
import { FoundHandler, JobHandlers, MAX_PASS_STALLS, indexJobHandlers } from './job-handlers';
import { OnJob } from './on-job.decorator';
import { JOB_NAMES, JobName, type JobPayloads } from './queues';
import { ScheduledPassLocks } from './scheduled-pass-locks';

/** A provider with one `@OnJob` method per given job, each answering `<job>:<data>`. */
function handlersOf(names: readonly string[], className = 'Jobs'): Type<unknown> {
  const cls = class {};
  Object.defineProperty(cls, 'name', { value: className });
  names.forEach((name, i) => {
    const key = `run${i}`;
    Object.defineProperty(cls.prototype, key, {
      value: async (data: unknown) => `${name}:${JSON.stringify(data)}`,
      writable: true,
      configurable: true,
    });
    const descriptor = Object.getOwnPropertyDescriptor(cls.prototype, key)!;
    OnJob(name as JobName)(cls.prototype, key, descriptor);
  });
  Injectable()(cls);
  return cls;
}

/** The pass locks, in memory: `tryHold` answers a hold, null (held elsewhere) or throws, as told. */
const passLocks = {
  next: 'free' as 'free' | 'held' | 'unreachable',
  released: 0,
  tryHold: jest.fn(async () => {
    if (passLocks.next === 'unreachable') throw new Error('connect ECONNREFUSED');
    if (passLocks.next === 'held') return null;
    return { held: true, release: async () => void passLocks.released++ };
  }),
};

async function boot(...providers: Provider[]) {
  const registrar = { register: jest.fn() };
  const moduleRef = await Test.createTestingModule({
    imports: [DiscoveryModule],
    providers: [
      JobHandlers,
      { provide: BullRegistrar, useValue: registrar },
      { provide: ScheduledPassLocks, useValue: passLocks },
      ...providers,
    ],
  }).compile();
  const error = await moduleRef.init().then(
    () => undefined,
    (err: Error) => err,
  );
  if (error) return { error, registrar }; // nothing was started, nothing to close
  return { handlers: moduleRef.get(JobHandlers), registrar, close: () => moduleRef.close() };
}

const found = (job: string, label = `Jobs.${job}`): FoundHandler => ({
  job,
  label,
  run: async () => job,
});

describe('indexJobHandlers', () => {
  it('indexes one handler per registry job', () => {
    expect([...indexJobHandlers(JOB_NAMES.map((n) => found(n))).keys()].sort()).toEqual(
      [...JOB_NAMES].sort(),
    );
  });

  it('refuses a registry job without a handler', () => {
    expect(() => indexJobHandlers(JOB_NAMES.slice(1).map((n) => found(n)))).toThrow(
      `${JOB_NAMES[0]} has no handler`,
    );
  });

  it('refuses a job with two handlers, naming both', () => {
    const all = [...JOB_NAMES.map((n) => found(n)), found(JobName.SendEmail, 'Other.send')];
    expect(() => indexJobHandlers(all)).toThrow(
      `${JobName.SendEmail} has two handlers: Jobs.${JobName.SendEmail} and Other.send`,
    );
  });

  it('refuses a handler of a job the registry does not know', () => {
    const all = [...JOB_NAMES.map((n) => found(n)), found('orders.typo', 'Jobs.typo')];
    expect(() => indexJobHandlers(all)).toThrow(
      'Jobs.typo handles "orders.typo", which is not a job in the registry',
    );
  });
});

describe('JobHandlers (at boot)', () => {
  beforeAll(() => Logger.overrideLogger(false));

  it('finds the @OnJob methods of every provider, then starts the workers; runs a job with its data', async () => {
    const half = Math.ceil(JOB_NAMES.length / 2);
    const booted = await boot(
      handlersOf(JOB_NAMES.slice(0, half), 'A'),
      handlersOf(JOB_NAMES.slice(half), 'B'),
    );
    try {
      expect(booted.error).toBeUndefined();
      expect(booted.registrar.register).toHaveBeenCalledTimes(1);
      const data: JobPayloads[JobName.SettleRefund] = { refundId: 'r1' };
      const job = { name: JobName.SettleRefund, data } as Job;
      expect(await booted.handlers!.process(job)).toBe(`${JobName.SettleRefund}:{"refundId":"r1"}`);
      await expect(
        booted.handlers!.process({ name: 'orders.nope', data: {} } as Job),
      ).rejects.toThrow('no handler for job orders.nope');
    } finally {
      await booted.close?.();
    }
  });

  it('runs a scheduled pass under its lock; skips it while the lock is held elsewhere; runs it when the lock cannot be asked', async () => {
    const booted = await boot(handlersOf(JOB_NAMES));
    try {
      const pass = { name: JobName.ReconcilePayments, data: {} } as Job;
      const ran = `${JobName.ReconcilePayments}:{}`;
      passLocks.next = 'free';
      expect(await booted.handlers!.process(pass)).toBe(ran);
      expect(passLocks.tryHold).toHaveBeenLastCalledWith(JobName.ReconcilePayments);
      expect(passLocks.released).toBe(1);
      passLocks.next = 'held';
      expect(await booted.handlers!.process(pass)).toEqual({ skipped: 'pass-running' });
      passLocks.next = 'unreachable';
      expect(await booted.handlers!.process(pass)).toBe(ran);
      // while a pass runs here (its lock session unable to reach the database), another of the
      // same job in this process is skipped without asking; one of another job runs
      let finish!: () => void;
      const running = new Promise<void>((resolve) => (finish = resolve));
      passLocks.tryHold.mockClear();
      const internals = booted.handlers as unknown as {
        singlePass(n: string, r: () => Promise<unknown>): Promise<unknown>;
      };
      const first = internals.singlePass(JobName.ReconcilePayments, async () => {
        await running;
        return 'first';
      });
      expect(await booted.handlers!.process(pass)).toEqual({ skipped: 'pass-running' });
      expect(passLocks.tryHold).toHaveBeenCalledTimes(1);
      expect(await booted.handlers!.process({ name: JobName.PurgeOutbox, data: {} } as Job)).toBe(
        `${JobName.PurgeOutbox}:{}`,
      );
      finish();
      expect(await first).toBe('first');
      expect(await booted.handlers!.process(pass)).toBe(ran);
      // a job that is not a scheduled pass never asks for a lock
      passLocks.tryHold.mockClear();
      expect(
        await booted.handlers!.process({
          name: JobName.SettleRefund,
          data: { refundId: 'r1' },
        } as Job),
      ).toBe(`${JobName.SettleRefund}:{"refundId":"r1"}`);
      expect(passLocks.tryHold).not.toHaveBeenCalled();
    } finally {
      await booted.close?.();
    }
  });

  it("ends a scheduled pass's job that stalled more than MAX_PASS_STALLS times without running it (BullMQ never fails a scheduler's job for its stalls); other jobs are BullMQ's to fail", async () => {
    const booted = await boot(handlersOf(JOB_NAMES));
    const errors = jest.spyOn(Logger.prototype, 'error').mockImplementation(() => undefined);
    try {
      passLocks.next = 'free';
      const pass = (stalledCounter: number) =>
        ({ name: JobName.ReconcilePayments, data: {}, id: 'p1', stalledCounter }) as Job;
      passLocks.tryHold.mockClear();
      expect(await booted.handlers!.process(pass(MAX_PASS_STALLS + 1))).toEqual({
        skipped: 'stalled-too-often',
      });
      expect(passLocks.tryHold).not.toHaveBeenCalled();
      expect(errors).toHaveBeenCalledTimes(1);
      expect(await booted.handlers!.process(pass(MAX_PASS_STALLS))).toBe(
        `${JobName.ReconcilePayments}:{}`,
      );
      expect(
        await booted.handlers!.process({
          name: JobName.SettleRefund,
          data: { refundId: 'r1' },
          stalledCounter: 9,
        } as Job),
      ).toBe(`${JobName.SettleRefund}:{"refundId":"r1"}`);
    } finally {
      errors.mockRestore();
      await booted.close?.();
    }
  });

  it('fails the boot, before any worker starts, when a job has no handler', async () => {
    const { error, registrar } = await boot(
      handlersOf(JOB_NAMES.filter((n) => n !== JobName.PurgeOutbox)),
    );
    expect(error?.message).toContain(`${JobName.PurgeOutbox} has no handler`);
    expect(registrar.register).not.toHaveBeenCalled();
  });

  it('fails the boot when a job has two handlers', async () => {
    const { error, registrar } = await boot(
      handlersOf(JOB_NAMES, 'A'),
      handlersOf([JobName.ExpireReservation], 'B'),
    );
    expect(error?.message).toContain(
      `${JobName.ExpireReservation} has two handlers: A.run0 and B.run0`,
    );
    expect(registrar.register).not.toHaveBeenCalled();
  });

  it('fails the boot when a handler names a job the registry does not know', async () => {
    const { error, registrar } = await boot(handlersOf([...JOB_NAMES, 'email.sned']));
    expect(error?.message).toContain(`Jobs.run${JOB_NAMES.length} handles "email.sned"`);
    expect(registrar.register).not.toHaveBeenCalled();
  });
});
