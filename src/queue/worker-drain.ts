import { WorkerHost } from '@nestjs/bullmq';
import { BeforeApplicationShutdown, Inject, Injectable, Logger } from '@nestjs/common';
import { DiscoveryService } from '@nestjs/core';
import { APP_CONFIG, AppConfig } from '../config/config';
import { workerHosts } from './worker-start';

/**
 * On shutdown, before any pool closes: stop taking jobs and wait for the running ones to
 * finish (a job cut off anyway is retried by BullMQ once its lock expires; handlers are
 * idempotent) — for SHUTDOWN_TIMEOUT_MS at most, then the workers are closed without waiting:
 * a job stuck on a Redis that failed over under it held the close for good (a test's worker never
 * closed; a process only by its forced exit, its pools never closed in order).
 */
@Injectable()
export class WorkerDrain implements BeforeApplicationShutdown {
  private readonly logger = new Logger(WorkerDrain.name);

  constructor(
    private readonly discovery: DiscoveryService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  async beforeApplicationShutdown(): Promise<void> {
    await Promise.all(workerHosts(this.discovery).map((h) => this.drain(h)));
  }

  private async drain(host: WorkerHost): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const waited = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), this.config.http.shutdownTimeoutMs);
    });
    try {
      // pause, not close: BullMQ's close() hands every later call the first call's promise, so a
      // close(true) after a close() that waits on a stuck job waited on it all the same (and so
      // did @nestjs/bullmq's own close in the next hook: the forced exit again)
      // (a pause that fails — Redis refusing the reconnect after it — still ends in the forced close)
      const idle = host.worker.pause().then(
        () => 'idle' as const,
        () => 'failed' as const,
      );
      if ((await Promise.race([idle, waited])) === 'timeout') {
        this.logger.warn(
          `queue ${host.worker.name}: jobs still running (or Redis not answering the pause) after ${this.config.http.shutdownTimeoutMs} ms; closing without them (they are retried)`,
        );
        // a drain cut short is no clean stop: the process exits 1, as the API's forced one does,
        // so a supervisor or an alert can tell (it exited 0)
        if (!process.exitCode) process.exitCode = 1;
      }
      // the first close, forced: it waits for no job (none runs, or one stuck is given up) and
      // drops the connections instead of asking a Redis that may not answer to QUIT
      await Promise.race([
        host.worker.close(true),
        new Promise((r) => setTimeout(r, 1_000).unref()),
      ]);
    } catch {
      /* never started (e.g. boot failed before the workers ran) */
    } finally {
      clearTimeout(timer);
    }
  }
}
