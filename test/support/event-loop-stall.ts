/**
 * Holds this process's event loop for `ms`, as a long GC or a busy handler does, from the loop's
 * check phase: its timers then run before its next reading of the sockets — the order in which
 * an answer that came during a stall looked like a server's silence (stallAwareClient).
 */
export function stallEventLoop(ms: number): Promise<void> {
  return new Promise((resolve) =>
    setImmediate(() => {
      const until = performance.now() + ms;
      while (performance.now() < until);
      resolve();
    }),
  );
}
