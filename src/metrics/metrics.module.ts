import { Global, Module } from '@nestjs/common';
import { ClockSkewMetrics } from './clock-skew.metrics';
import { MetricsListener } from './metrics-listener';
import { MetricsService } from './metrics.service';
import { QueueDepthMetrics } from './queue-depth.metrics';

/**
 * One Prometheus registry per process. It is served by MetricsListener on a port of its own
 * (METRICS_PORT / WORKER_METRICS_PORT), never on the public API port.
 */
@Global()
@Module({
  providers: [MetricsService, QueueDepthMetrics, ClockSkewMetrics, MetricsListener],
  exports: [MetricsService, MetricsListener],
})
export class MetricsModule {}
