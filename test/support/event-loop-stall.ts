import type { Client } from 'pg';

/**
 * Holds this process's event loop for `ms`, as a long GC or a busy handler does, from the loop's
 * check phase: its timers then run before its next reading of the sockets — the order in which
 * an answer that came during a stall looked like a server's silence (stallAwareClient).
 */
function stallEventLoop(ms: number): Promise<void> {
  return new Promise((resolve) =>
    setImmediate(() => {
      const until = performance.now() + ms;
      while (performance.now() < until);
      resolve();
    }),
  );
}

/**
 * Sends `sql` on `client`, then holds the event loop `ms` (stallEventLoop): the statement's
 * outcome — 'answered', or its error's message.
 */
export async function outcomeAcrossStall(client: Client, sql: string, ms: number): Promise<string> {
  const outcome = client.query(sql).then(
    () => 'answered',
    (err: Error) => err.message,
  );
  await stallEventLoop(ms);
  return outcome;
}
