import { WorkerHost } from '@nestjs/bullmq';
import type { DiscoveryService } from '@nestjs/core';
import { loadConfig } from '../config/config';
import { WorkerDrain } from './worker-drain';

class Host extends WorkerHost {
  process(): Promise<void> {
    return Promise.resolve();
  }
}

/** A worker whose running job never ends: close() waits for good, close(true) does not. */
function stuckWorker() {
  const close = jest.fn((force?: boolean) =>
    force ? Promise.resolve() : new Promise<void>(() => undefined),
  );
  const host = new Host();
  Object.assign(host, { _worker: { name: 'payments', close } });
  return { host, close };
}

describe('WorkerDrain', () => {
  it('waits for running jobs at most SHUTDOWN_TIMEOUT_MS, then closes the worker without them', async () => {
    const { host, close } = stuckWorker();
    const discovery = { getProviders: () => [{ instance: host }] } as unknown as DiscoveryService;
    const drain = new WorkerDrain(
      discovery,
      loadConfig({
        NODE_ENV: 'development',
        SHUTDOWN_TIMEOUT_MS: '200',
        DATABASE_POOL_WAIT_MS: '100',
      }),
    );
    const startedAt = Date.now();
    await drain.beforeApplicationShutdown();
    expect(Date.now() - startedAt).toBeLessThan(2_000);
    expect(close.mock.calls).toEqual([[], [true]]);
  });
});
