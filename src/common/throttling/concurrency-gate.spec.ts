import { DomainError } from '../errors/domain-error';
import { ConcurrencyGate, GATE_BUSY_RETRY_AFTER_SECONDS } from './concurrency-gate';

/** A task the test finishes by hand. */
function deferred() {
  let finish!: () => void;
  const done = new Promise<void>((resolve) => (finish = resolve));
  return { done, finish };
}

const outcome = (p: Promise<unknown>) =>
  p.then(
    () => 'ran',
    (e: unknown) => (e instanceof DomainError ? e.code : e),
  );

describe('ConcurrencyGate', () => {
  it('runs at most `concurrency` tasks at once, the waiting ones first come first served', async () => {
    const gate = new ConcurrencyGate({ concurrency: 2, maxQueued: 10, maxWaitMs: 5_000 });
    const tasks = Array.from({ length: 5 }, deferred);
    const started: number[] = [];
    const runs = tasks.map((t, i) =>
      gate.run(async () => {
        started.push(i);
        await t.done;
      }),
    );
    await Promise.resolve();
    expect(started).toEqual([0, 1]);
    expect(gate.active).toBe(2);
    expect(gate.queued).toBe(3);
    tasks[1].finish();
    await runs[1];
    await Promise.resolve();
    expect(started).toEqual([0, 1, 2]);
    expect(gate.active).toBe(2);
    tasks.forEach((t) => t.finish());
    await Promise.all(runs);
    expect(started).toEqual([0, 1, 2, 3, 4]);
    expect(gate.active).toBe(0);
  });

  it('serves the priority lane first, with its own queue: a full ordinary queue never refuses it', async () => {
    const gate = new ConcurrencyGate({ concurrency: 1, maxQueued: 2, maxWaitMs: 5_000 });
    const started: string[] = [];
    const task = (name: string, t: { done: Promise<void> }) => async () => {
      started.push(name);
      await t.done;
    };
    const first = deferred();
    const running = gate.run(task('running', first));
    const strangers = [deferred(), deferred()];
    const queued = strangers.map((t, i) => gate.run(task(`stranger ${i}`, t)));
    // the ordinary queue is full: a third stranger is refused, the owner is not
    expect(await outcome(gate.run(task('stranger 2', deferred())))).toBe('SERVICE_UNAVAILABLE');
    const owner = deferred();
    const owners = gate.run(task('owner', owner), { priority: true });
    expect(gate.queued).toBe(3);
    first.finish();
    await running;
    await Promise.resolve();
    expect(started).toEqual(['running', 'owner']); // ahead of the strangers who came first
    owner.finish();
    strangers.forEach((t) => t.finish());
    await Promise.all([owners, ...queued]);
    expect(started).toEqual(['running', 'owner', 'stranger 0', 'stranger 1']);
    expect(gate.active).toBe(0);
  });

  it('a priority lane kept full does not shut the other out: after 3 priority slots in a row, one of the others', async () => {
    const gate = new ConcurrencyGate({ concurrency: 1, maxQueued: 10, maxWaitMs: 5_000 });
    const started: string[] = [];
    const all: Promise<unknown>[] = [];
    const queue = (name: string, priority: boolean) =>
      all.push(gate.run(async () => void started.push(name), { priority }));
    let free!: () => void;
    const running = gate.run(() => new Promise<void>((resolve) => (free = resolve)));
    queue('o1', false);
    queue('o2', false);
    for (const p of ['p1', 'p2', 'p3', 'p4', 'p5']) queue(p, true);
    await new Promise((r) => setImmediate(r)); // the first task has the slot
    free();
    await Promise.all([running, ...all]);
    expect(started).toEqual(['p1', 'p2', 'p3', 'o1', 'p4', 'p5', 'o2']);
    expect(gate.active).toBe(0);
  });

  it('frees the slot of a task that throws', async () => {
    const gate = new ConcurrencyGate({ concurrency: 1, maxQueued: 1, maxWaitMs: 5_000 });
    await expect(gate.run(() => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(await outcome(gate.run(() => Promise.resolve(1)))).toBe('ran');
    expect(gate.active).toBe(0);
  });

  it('refuses at once with 503 SERVICE_UNAVAILABLE and Retry-After when the queue is full', async () => {
    const gate = new ConcurrencyGate({ concurrency: 1, maxQueued: 1, maxWaitMs: 5_000 });
    const running = deferred();
    const first = gate.run(() => running.done);
    const second = gate.run(() => Promise.resolve());
    const refused = await gate.run(() => Promise.resolve()).catch((e: unknown) => e);
    expect(refused).toMatchObject({
      code: 'SERVICE_UNAVAILABLE',
      status: 503,
      options: { headers: { 'Retry-After': String(GATE_BUSY_RETRY_AFTER_SECONDS) } },
    });
    running.finish();
    expect(await Promise.all([outcome(first), outcome(second)])).toEqual(['ran', 'ran']);
  });

  it('refuses a caller that waited maxWaitMs, and takes it out of the queue', async () => {
    const gate = new ConcurrencyGate({ concurrency: 1, maxQueued: 5, maxWaitMs: 30 });
    const running = deferred();
    const first = gate.run(() => running.done);
    let ranLate = false;
    const late = gate.run(async () => {
      ranLate = true;
    });
    expect(await outcome(late)).toBe('SERVICE_UNAVAILABLE');
    expect(gate.queued).toBe(0);
    running.finish();
    await first;
    expect(ranLate).toBe(false);
    expect(gate.active).toBe(0);
  });
});

describe('ConcurrencyGate places per holder', () => {
  it('gives one holder at most placesPerHolder places, running or waiting, in both lanes; others are not held back; a place comes back when its task ends', async () => {
    const gate = new ConcurrencyGate({
      concurrency: 1,
      maxQueued: 10,
      maxWaitMs: 5_000,
      placesPerHolder: 2,
    });
    const tasks = [deferred(), deferred(), deferred(), deferred()];
    const first = gate.run(() => tasks[0].done, { holder: 'net-a' });
    const second = gate.run(() => tasks[1].done, { holder: 'net-a', priority: true });
    // a third place for net-a: refused at once, whatever its lane
    expect(
      await outcome(gate.run(async () => undefined, { holder: 'net-a', priority: true })),
    ).toBe('SERVICE_UNAVAILABLE');
    // another holder, and a caller naming none, still wait their turn
    const other = gate.run(() => tasks[2].done, { holder: 'net-b' });
    const anonymous = gate.run(() => tasks[3].done);
    for (const t of tasks) t.finish();
    expect(await Promise.all([first, second, other, anonymous].map(outcome))).toEqual([
      'ran',
      'ran',
      'ran',
      'ran',
    ]);
    // all given back: net-a may hold two places again
    const again = [
      gate.run(async () => undefined, { holder: 'net-a' }),
      gate.run(async () => undefined, { holder: 'net-a' }),
    ];
    expect(await Promise.all(again.map(outcome))).toEqual(['ran', 'ran']);
    expect(gate['held'].size).toBe(0);
  });

  it('a refused or failed task gives its place back', async () => {
    const gate = new ConcurrencyGate({
      concurrency: 1,
      maxQueued: 0,
      maxWaitMs: 5_000,
      placesPerHolder: 1,
    });
    const busy = deferred();
    const running = gate.run(() => busy.done);
    // the queue is full (maxQueued 0): refused by the gate, the place given back
    expect(await outcome(gate.run(async () => undefined, { holder: 'net-a' }))).toBe(
      'SERVICE_UNAVAILABLE',
    );
    busy.finish();
    await running;
    expect(
      await outcome(gate.run(() => Promise.reject(new Error('boom')), { holder: 'net-a' })),
    ).toEqual(new Error('boom'));
    expect(await outcome(gate.run(async () => undefined, { holder: 'net-a' }))).toBe('ran');
  });

  it('a task over a cap of its holder waits, holding no slot and refused for nothing, while others behind it go first; it runs once one of its holder’s tasks ends', async () => {
    const gate = new ConcurrencyGate({ concurrency: 3, maxQueued: 10, maxWaitMs: 5_000 });
    const net = { holder: 'net:a', limit: 2 };
    const tasks = Array.from({ length: 5 }, deferred);
    const started: string[] = [];
    const run = (i: number, name: string, caps = [net]) =>
      gate.run(
        async () => {
          started.push(name);
          await tasks[i].done;
        },
        { caps },
      );
    const runs = [run(0, 'a1'), run(1, 'a2'), run(2, 'a3'), run(3, 'other', [])];
    await Promise.resolve();
    // a3 is over its /48's two: the third slot goes to the task behind it
    expect(started).toEqual(['a1', 'a2', 'other']);
    expect(gate.queued).toBe(1);
    // a slot another holder frees is not a3's either: its holder still has two
    tasks[3].finish();
    await runs[3];
    await Promise.resolve();
    expect(started).toEqual(['a1', 'a2', 'other']);
    expect(gate.active).toBe(2);
    const b = run(4, 'b1', [{ holder: 'net:b', limit: 2 }]);
    await Promise.resolve();
    expect(started).toEqual(['a1', 'a2', 'other', 'b1']);
    // one of its holder's ends: a3 runs
    tasks[0].finish();
    await runs[0];
    await Promise.resolve();
    expect(started).toEqual(['a1', 'a2', 'other', 'b1', 'a3']);
    tasks.forEach((t) => t.finish());
    expect(await Promise.all([...runs, b].map(outcome))).toEqual(Array(5).fill('ran'));
    expect(gate.active).toBe(0);
  });

  it('a release that frees the caps of two waiters starts both while slots are free (a build holds a client and a /48 cap)', async () => {
    const gate = new ConcurrencyGate({ concurrency: 3, maxQueued: 10, maxWaitMs: 5_000 });
    const cap = (holder: string) => ({ holder, limit: 1 });
    const tasks = Array.from({ length: 3 }, deferred);
    const started: string[] = [];
    const run = (i: number, name: string, caps: { holder: string; limit: number }[]) =>
      gate.run(
        async () => {
          started.push(name);
          await tasks[i].done;
        },
        { caps },
      );
    const first = run(0, 'client a on net n', [cap('a'), cap('n')]);
    // each waits on one of the first task's caps, with two slots free
    const sameNet = run(1, 'client b on net n', [cap('b'), cap('n')]);
    const sameClient = run(2, 'client a on net m', [cap('a'), cap('m')]);
    await Promise.resolve();
    expect(started).toEqual(['client a on net n']);
    expect(gate.queued).toBe(2);
    tasks[0].finish();
    await first;
    await Promise.resolve();
    // both may run now, and there are slots for both: neither is left waiting for a release
    expect(started).toEqual(['client a on net n', 'client b on net n', 'client a on net m']);
    expect(gate.active).toBe(2);
    expect(gate.queued).toBe(0);
    tasks.forEach((t) => t.finish());
    expect(await Promise.all([sameNet, sameClient].map(outcome))).toEqual(['ran', 'ran']);
    expect(gate.active).toBe(0);
  });
});
