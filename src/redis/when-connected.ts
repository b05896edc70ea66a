/** What is asked of an ioredis client: its status, and its 'ready' event. */
export interface ConnectionEvents {
  status?: string;
  once?(event: 'ready', listener: () => void): unknown;
  on?(event: 'ready', listener: () => void): unknown;
}

/** Per client, the next 'ready' event: one listener however many callers wait for it. */
const nextReady = new WeakMap<object, Promise<void>>();
/** Per client, when a caller first found it without a connection (forgotten at its next 'ready': watch). */
const unconnectedSince = new WeakMap<object, number>();
/** The clients whose every 'ready' clears that (one listener each, for good). */
const watched = new WeakSet<object>();

function watch(client: ConnectionEvents): void {
  if (watched.has(client) || !client.on) return;
  watched.add(client);
  // connected again with no caller looking (an outage nobody waited out to its end): a later
  // blip gets its own allowance, not what is left of that outage's
  client.on('ready', () => unconnectedSince.delete(client));
}

function readyEvent(client: ConnectionEvents): Promise<void> {
  let ready = nextReady.get(client);
  if (!ready) {
    ready = new Promise<void>((resolve) =>
      client.once!('ready', () => {
        nextReady.delete(client);
        resolve();
      }),
    );
    nextReady.set(client, ready);
  }
  return ready;
}

/**
 * Resolves once the client is connected, or when the allowance runs out. A client between
 * connections — one dropped and being replaced: a failover, a proxy restart, a killed connection
 * — refuses every command at once (no offline queue, redis.module.ts), so a command sent in that
 * gap fails though Redis is fine; a caller that would refuse the request on that failure (a
 * fail-closed rate limit) waits for the reconnect first. The allowance is `withinMs` from when a
 * caller first found the client unconnected, not per call: through an outage only its first
 * moments wait, and every later call goes on at once (to fail as it did). At once, too, when the
 * client is connected, closed for good, or a test's stand-in without a status.
 */
export async function whenConnected(client: ConnectionEvents, withinMs: number): Promise<void> {
  const status = client.status;
  if (status === undefined || status === 'ready' || status === 'end' || !client.once || !client.on)
    return;
  watch(client);
  const now = performance.now();
  const since = unconnectedSince.get(client) ?? now;
  unconnectedSince.set(client, since);
  const left = since + withinMs - now;
  if (left <= 0) return;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    readyEvent(client),
    new Promise<void>((resolve) => (timer = setTimeout(resolve, left))),
  ]);
  clearTimeout(timer);
}
