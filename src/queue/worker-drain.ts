import { WorkerHost } from '@nestjs/bullmq';
import { BeforeApplicationShutdown, Injectable } from '@nestjs/common';
import { DiscoveryService } from '@nestjs/core';

/**
 * On shutdown, before any pool closes: stop taking jobs and wait for the running ones to
 * finish (a job cut off anyway is retried by BullMQ once its lock expires; handlers are
 * idempotent).
 */
@Injectable()
export class WorkerDrain implements BeforeApplicationShutdown {
  constructor(private readonly discovery: DiscoveryService) {}

  async beforeApplicationShutdown(): Promise<void> {
    const hosts = this.discovery
      .getProviders()
      .map((w) => w.instance as unknown)
      .filter((i): i is WorkerHost => i instanceof WorkerHost);
    await Promise.all(
      hosts.map(async (h): Promise<void> => {
        try {
          await h.worker.close();
        } catch {
          /* never started (e.g. boot failed before the workers ran) */
        }
      }),
    );
  }
}
