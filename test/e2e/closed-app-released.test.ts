import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { DataSource } from 'typeorm';
import { bootTestApp } from '../support/test-app';
import { bootTestWorker } from '../support/test-worker';

/** A full garbage collection (V8's own `gc`, exposed for this file). */
function collectGarbage(): void {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
}

/** Whether everything `refs` point to is gone: a collection every 50 ms, for 2 s at most. */
async function released(refs: WeakRef<object>[]): Promise<boolean> {
  for (let i = 0; i < 40; i++) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    collectGarbage();
    if (refs.every((ref) => ref.deref() === undefined)) return true;
  }
  return false;
}

/** An API and a worker on its database, booted, serving a request and a scrape, then closed. */
async function servedThenClosed(): Promise<WeakRef<object>[]> {
  const t = await bootTestApp();
  const worker = await bootTestWorker(t.config);
  const refs = [new WeakRef(t.app.get(DataSource)), new WeakRef(worker.get(DataSource))];
  expect((await t.http.get('/health/live')).status).toBe(200);
  await t.metrics();
  await worker.close();
  await t.close();
  return refs;
}

/**
 * A process that closes an application and goes on — a jest worker closes dozens, one file after
 * another — keeps none of it. prom-client's default metrics hold their registry for good (a GC
 * observer nothing disconnects, an event-loop monitor), and the registry held every gauge's collect
 * function and, through it, the services and the database's metadata: each closed application
 * stayed, ~15 MB a test file, its GCs slower file after file. And the close's cut timer held the
 * rest for SHUTDOWN_TIMEOUT_MS. (Passport's strategies are one module-wide registry: the last
 * application's stays named there until the next one boots — so one more is booted before the
 * check.)
 */
it('a closed application is released: the API and the worker, once another has booted', async () => {
  const refs = [...(await servedThenClosed()), ...(await servedThenClosed())];
  await servedThenClosed();
  expect(await released(refs)).toBe(true);
});
