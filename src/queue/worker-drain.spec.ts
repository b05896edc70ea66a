import { WorkerHost } from '@nestjs/bullmq';
import type { DiscoveryService } from '@nestjs/core';
import { loadConfig } from '../config/config';
import { WorkerDrain } from './worker-drain';

class Host extends WorkerHost {
  process(): Promise<void> {
    return Promise.resolve();
  }
}

/**
 * A worker whose running job never ends, closing as BullMQ's does: pause() waits for the running
 * job; close(force) waits for it unless forced, and every later close() gets the first one's promise.
 */
function stuckWorker() {
  let closing: Promise<void> | undefined;
  const close = jest.fn(
    (force?: boolean) =>
      (closing ??= force ? Promise.resolve() : new Promise<void>(() => undefined)),
  );
  const pause = jest.fn(() => new Promise<void>(() => undefined));
  const host = new Host();
  Object.assign(host, { _worker: { name: 'payments', close, pause } });
  return { host, close, pause };
}

/** The drain of one worker host, with SHUTDOWN_TIMEOUT_MS 200 ms. */
function drainOf(host: WorkerHost): WorkerDrain {
  const discovery = { getProviders: () => [{ instance: host }] } as unknown as DiscoveryService;
  return new WorkerDrain(
    discovery,
    loadConfig({
      NODE_ENV: 'development',
      SHUTDOWN_TIMEOUT_MS: '200',
      DATABASE_POOL_WAIT_MS: '100',
    }),
  );
}

describe('WorkerDrain', () => {
  afterEach(() => {
    process.exitCode = undefined;
  });

  it('waits for running jobs at most SHUTDOWN_TIMEOUT_MS, then closes the worker without them; a later close() does not wait', async () => {
    const { host, close, pause } = stuckWorker();
    const drain = drainOf(host);
    const startedAt = Date.now();
    await drain.beforeApplicationShutdown();
    expect(Date.now() - startedAt).toBeLessThan(4_000); // (200 ms, not forever; room for a stall)
    expect(pause).toHaveBeenCalledTimes(1);
    expect(close.mock.calls).toEqual([[true]]);
    // @nestjs/bullmq closes the worker again in its own shutdown hook: settled at once
    await expect(host.worker.close()).resolves.toBeUndefined();
    // and the process says it was no clean stop
    expect(process.exitCode).toBe(1);
  });

  it('a pause that fails (Redis refusing its reconnect) still ends in the forced close', async () => {
    const { host, close, pause } = stuckWorker();
    pause.mockImplementation(() => Promise.reject(new Error('Connection is closed.')));
    const drain = drainOf(host);
    await drain.beforeApplicationShutdown();
    expect(close.mock.calls).toEqual([[true]]);
  });

  it('a drain whose jobs all finished leaves the exit code clean', async () => {
    const { host, close, pause } = stuckWorker();
    pause.mockImplementation(() => Promise.resolve());
    const drain = drainOf(host);
    await drain.beforeApplicationShutdown();
    expect(close.mock.calls).toEqual([[true]]);
    expect(process.exitCode).toBeUndefined();
  });
});
