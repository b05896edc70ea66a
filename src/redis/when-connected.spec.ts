import type Redis from 'ioredis';
import { EventEmitter } from 'node:events';
import { whenConnected } from './when-connected';

/** A client stand-in: a status, and the 'ready' event ioredis emits on connecting. */
class FakeClient extends EventEmitter {
  status: Redis['status'] = 'ready';
  connect(): void {
    this.status = 'ready';
    this.emit('ready');
  }
}

describe('whenConnected', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  const settled = (p: Promise<void>) => {
    let done = false;
    void p.then(() => (done = true));
    return () => done;
  };

  it('resolves at once for a connected client, or one closed for good', async () => {
    const client = new FakeClient();
    await whenConnected(client, 500);
    client.status = 'end';
    await whenConnected(client, 500);
  });

  it('waits for a reconnect (a blip): resolves as soon as the client is ready', async () => {
    const client = new FakeClient();
    client.status = 'reconnecting';
    const waiting = Array.from({ length: 50 }, () => settled(whenConnected(client, 500)));
    await jest.advanceTimersByTimeAsync(100);
    expect(waiting.some((done) => done())).toBe(false);
    client.connect();
    await jest.advanceTimersByTimeAsync(0);
    expect(waiting.every((done) => done())).toBe(true);
    // one listener for all the waiters, gone once fired (the one left clears the allowance)
    expect(client.listenerCount('ready')).toBe(1);
  });

  it('through an outage, only its first moments wait: the allowance counts from when the client was first found unconnected', async () => {
    const client = new FakeClient();
    client.status = 'reconnecting';
    const first = settled(whenConnected(client, 500));
    await jest.advanceTimersByTimeAsync(300);
    const second = settled(whenConnected(client, 500)); // 200 ms of the allowance left
    await jest.advanceTimersByTimeAsync(199);
    expect([first(), second()]).toEqual([false, false]);
    await jest.advanceTimersByTimeAsync(1);
    expect([first(), second()]).toEqual([true, true]);
    const later = settled(whenConnected(client, 500)); // the outage goes on: no wait at all
    await jest.advanceTimersByTimeAsync(0);
    expect(later()).toBe(true);
    // connected again, then another blip: a fresh allowance
    client.connect();
    await whenConnected(client, 500);
    client.status = 'reconnecting';
    const next = settled(whenConnected(client, 500));
    await jest.advanceTimersByTimeAsync(499);
    expect(next()).toBe(false);
    await jest.advanceTimersByTimeAsync(1);
    expect(next()).toBe(true);
  });

  it('a reconnect nobody waited for still gives the next blip a fresh allowance', async () => {
    const client = new FakeClient();
    client.status = 'reconnecting';
    const during = settled(whenConnected(client, 500));
    await jest.advanceTimersByTimeAsync(500); // an outage longer than the allowance
    expect(during()).toBe(true);
    client.connect(); // back, with no caller looking
    client.status = 'reconnecting'; // days later, a blip
    const blip = settled(whenConnected(client, 500));
    await jest.advanceTimersByTimeAsync(499);
    expect(blip()).toBe(false);
    client.connect();
    await jest.advanceTimersByTimeAsync(0);
    expect(blip()).toBe(true);
  });
});
