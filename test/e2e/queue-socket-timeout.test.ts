import Redis from 'ioredis';
import { queueConnectionOptions } from '../../src/queue/redis-connection';
import { PrivateRedis } from '../support/private-redis';
import { waitFor } from '../support/wait-for';

/**
 * ioredis (5.11) left a closed connection's `socketTimeout` timer armed, and when it fired it
 * destroyed the healthy connection that had replaced it: BullMQ's watchdog closes a worker's
 * blocking connection with a timer armed, so after a Redis restart each worker's connections
 * were dropped every ~20 s until it restarted (redis-loss review). The queues' connection options
 * bind each timer to the connection it was armed for.
 */
describe("the queues' Redis connections: a closed connection's socket timer", () => {
  let redis: PrivateRedis;
  beforeAll(async () => {
    redis = await PrivateRedis.start();
  });
  afterAll(async () => {
    await redis?.down();
  });

  it('never drops the connection that replaced it', async () => {
    const client = new Redis({
      ...queueConnectionOptions(redis.url),
      socketTimeout: 600,
      maxRetriesPerRequest: 0,
      retryStrategy: () => 20,
    });
    client.on('error', () => undefined);
    try {
      let closes = 0;
      client.on('close', () => closes++);
      await waitFor('connected', async () => client.status, { until: (s) => s === 'ready' });
      // a command waiting for an answer arms the timer; the connection is then closed under it
      const waiting = client.blpop('nothing-here', 5).catch(() => undefined);
      await new Promise((resolve) => setTimeout(resolve, 100));
      (client as unknown as { stream: { destroy(): void } }).stream.destroy();
      // the timer under test is armed (600 ms); the new connection's own get 10 s, so a stalled
      // jest worker's late reply is not what drops it
      client.options.socketTimeout = 10_000;
      await waiting;
      await waitFor('reconnected', async () => client.status, { until: (s) => s === 'ready' });
      expect(closes).toBe(1);
      // past the old timer's deadline, idle: the new connection still stands
      await new Promise((resolve) => setTimeout(resolve, 900));
      expect([closes, client.status]).toEqual([1, 'ready']);
      expect(await client.ping()).toBe('PONG');
      // and the fix adds nothing per command: a listener per armed timer piled up on the stream
      const stream = (client as unknown as { stream: NodeJS.EventEmitter }).stream;
      const before = [client.listenerCount('close'), stream.listenerCount('close')];
      for (let i = 0; i < 200; i++) await client.ping();
      expect([client.listenerCount('close'), stream.listenerCount('close')]).toEqual(before);
    } finally {
      client.disconnect();
    }
  });
});
