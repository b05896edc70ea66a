import type Redis from 'ioredis';
import { mockOf } from '../../test/support/mocks';
import { loadConfig } from '../config/config';
import { OutboxRepository } from '../outbox/outbox.repository';
import { MetricsService } from './metrics.service';
import { QueueDepthMetrics } from './queue-depth.metrics';

describe('QueueDepthMetrics (read at scrape time)', () => {
  it('serves a flood of scrapes from one outbox count, not one query per scrape', async () => {
    const metrics = new MetricsService();
    const outbox = mockOf<OutboxRepository>({ countBacklog: async () => ({ pending: 3, dead: 1 }) }, 'outbox');
    const redis = mockOf<Redis>({ pipeline: () => ({ llen: () => undefined, zcard: () => undefined, exec: async () => [] }) }, 'redis');
    new QueueDepthMetrics(metrics, outbox, redis, loadConfig({ NODE_ENV: 'development' })).onModuleInit();
    const pages = await Promise.all(Array.from({ length: 20 }, () => metrics.render()));
    for (const page of pages) {
      expect(page).toMatch(/^outbox_backlog\{status="pending"\} 3$/m);
      expect(page).toMatch(/^outbox_backlog\{status="dead"\} 1$/m);
    }
    expect(outbox.countBacklog).toHaveBeenCalledTimes(1);
  });
});
