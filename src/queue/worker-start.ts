import { WorkerHost } from '@nestjs/bullmq';
import { Injectable, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { DiscoveryService } from '@nestjs/core';
import { KeyPrefixClaim } from '../redis/key-prefix-claim';

/**
 * The queues' workers are created without running (WORKER_OPTIONS `autorun: false`) and start
 * taking jobs once this process holds REDIS_KEY_PREFIX for its database (KeyPrefixClaim): a
 * worker of another deployment sharing the prefix must never take this one's jobs. Not awaited at
 * boot: a worker whose Redis is down boots, and its queues start when Redis answers.
 */
@Injectable()
export class WorkerStart implements OnApplicationBootstrap, OnApplicationShutdown {
  private stopped = false;

  constructor(
    private readonly discovery: DiscoveryService,
    private readonly claim: KeyPrefixClaim,
  ) {}

  onApplicationBootstrap(): void {
    void this.claim.held().then(() => {
      if (this.stopped) return;
      for (const host of workerHosts(this.discovery)) {
        // (as BullMQ's autorun does: a failed run is the worker's error event)
        host.worker.run().catch((err: unknown) => host.worker.emit('error', err as Error));
      }
    });
  }

  onApplicationShutdown(): void {
    this.stopped = true;
  }
}

/** Every queue's processor (WorkerHost) of this process. */
export function workerHosts(discovery: DiscoveryService): WorkerHost[] {
  return discovery
    .getProviders()
    .map((w) => w.instance as unknown)
    .filter((i): i is WorkerHost => i instanceof WorkerHost);
}
