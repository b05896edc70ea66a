import type { INestApplicationContext } from '@nestjs/common';

let draining = false;

/** A signal came: readiness answers 503 (the process still serves until its delay has passed). */
export function isDraining(): boolean {
  return draining;
}

/**
 * SIGTERM/SIGINT → `app.close()` (also of an app still booting, once it exists): the HTTP server stops accepting and drains in-flight
 * requests (and the worker drains its jobs) *before* the database and Redis pools close. (Nest's
 * own enableShutdownHooks runs the shutdown hooks without closing the server first.)
 *
 * `delayMs` (the API's SHUTDOWN_DELAY_MS): after the signal the process keeps serving that long
 * with readiness 503 — a load balancer takes it out of rotation — and only then stops accepting.
 * Closing at once refused the connections the balancer still sent it meanwhile.
 */
export function closeOnSignals(
  app: INestApplicationContext | Promise<INestApplicationContext>,
  timeoutMs: number,
  delayMs = 0,
): void {
  let closing = false;
  const close = (signal: NodeJS.Signals) => {
    if (closing) return;
    closing = true;
    draining = true;
    const force = setTimeout(
      () => {
        console.error(
          `shutdown after ${signal} took longer than ${delayMs + timeoutMs + 5000} ms; exiting`,
        );
        process.exit(1);
      },
      delayMs + timeoutMs + 5000,
    );
    force.unref();
    // an app still booting is closed once it exists (the timer above bounds a boot that hangs)
    Promise.resolve(app)
      .then(
        (ready) =>
          new Promise<INestApplicationContext>((resolve) =>
            setTimeout(() => resolve(ready), delayMs),
          ),
      )
      .then((ready) => ready.close())
      .then(
        // (0, unless the process was stopped for a reason: KeyPrefixClaim's lost claim)
        () => process.exit(),
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
