import type { INestApplicationContext } from '@nestjs/common';

/**
 * SIGTERM/SIGINT → `app.close()` (also of an app still booting, once it exists): the HTTP server stops accepting and drains in-flight
 * requests (and the worker drains its jobs) *before* the database and Redis pools close. (Nest's
 * own enableShutdownHooks runs the shutdown hooks without closing the server first.)
 */
export function closeOnSignals(
  app: INestApplicationContext | Promise<INestApplicationContext>,
  timeoutMs: number,
): void {
  let closing = false;
  const close = (signal: NodeJS.Signals) => {
    if (closing) return;
    closing = true;
    const force = setTimeout(() => {
      console.error(`shutdown after ${signal} took longer than ${timeoutMs} ms; exiting`);
      process.exit(1);
    }, timeoutMs + 5000);
    force.unref();
    // an app still booting is closed once it exists (the timer above bounds a boot that hangs)
    Promise.resolve(app)
      .then((ready) => ready.close())
      .then(
      () => process.exit(0),
      (err: unknown) => {
        console.error('error during shutdown', err);
        process.exit(1);
      },
    );
  };
  // `on`, not `once`: a second signal while draining (a supervisor signalling the whole process
  // group, an impatient operator) must find a listener that ignores it, not Node's default
  // action, which ends the process mid-drain; the timer above bounds the drain
  process.on('SIGTERM', close);
  process.on('SIGINT', close);
}
