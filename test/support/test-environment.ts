import { AsyncLocalStorage } from 'node:async_hooks';
import { appendFileSync, readFileSync } from 'node:fs';
import { TestEnvironment } from 'jest-environment-node';

/**
 * jest's node environment, plus: when a test file is done, every AsyncLocalStorage it used is
 * disabled.
 *
 * Each test file loads the application afresh (its own module registry), so each brings its own
 * storages: nestjs-pino's request context, and per app the TransactionHost's and the circuit
 * breaker's. Node (20) keeps every storage ever used in one process-wide list, and every promise
 * or other async resource created afterwards visits the whole list (a loop, and one property on
 * the resource per storage). Never disabled, they piled up in a jest worker file after file —
 * 53 after 12 files, and a worker runs ~55 files in a full run — so the later files paid for all
 * the earlier ones in CPU and garbage collection. The application itself has one set per process.
 *
 * `node:async_hooks` is the one instance shared by all files of a worker (core modules are not
 * re-loaded per file), so its prototype is wrapped once per worker: a storage is recorded when it
 * is first run or entered, and disabled at teardown (after the file's last afterAll). A later
 * `run()` would enable it again.
 */
const RECORDED = Symbol.for('shop.test.async-local-storages-used');

type Recording = typeof AsyncLocalStorage & { [RECORDED]?: Set<AsyncLocalStorage<unknown>> };

/** The storages used since the last teardown (kept on the shared class, not in this module). */
function recordedStorages(): Set<AsyncLocalStorage<unknown>> {
  const shared = AsyncLocalStorage as Recording;
  const existing = shared[RECORDED];
  if (existing) return existing;
  const used = new Set<AsyncLocalStorage<unknown>>();
  const proto = AsyncLocalStorage.prototype;
  const { run, enterWith } = proto;
  proto.run = function (this: AsyncLocalStorage<unknown>, ...args: Parameters<typeof run>) {
    used.add(this);
    return run.apply(this, args);
  } as typeof run;
  proto.enterWith = function (this: AsyncLocalStorage<unknown>, store: unknown) {
    used.add(this);
    return enterWith.call(this, store);
  };
  shared[RECORDED] = used;
  return used;
}

/**
 * With JEST_CPU_LOG=<file>, each test file appends one JSON line there: its path, wall time and
 * the CPU time its jest worker spent on it (user + system, ms; the worker runs one file at a time,
 * so the difference is the file's — not the servers' it talks to), and `childCpuMs`, that of the
 * child processes it started and saw end (the API and worker processes, CLIs, servers of its own:
 * the kernel's count for a process's waited-for children, /proc/self/stat).
 */
const CPU_LOG = process.env.JEST_CPU_LOG;

/** CPU time (ms) of this process's children that have ended and been waited for (Linux only). */
function childrenCpuMs(): number {
  try {
    // (fields after the command's closing parenthesis: cutime and cstime are the 14th and 15th)
    const stat = readFileSync('/proc/self/stat', 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[13]) + Number(fields[14])) * 1000) / 100; // (USER_HZ: 100)
  } catch {
    return 0;
  }
}

export default class ShopTestEnvironment extends TestEnvironment {
  private readonly file: string;
  private started = { cpu: process.cpuUsage(), at: 0, children: 0 };

  constructor(...[config, context]: ConstructorParameters<typeof TestEnvironment>) {
    super(config, context);
    this.file = context.testPath;
  }

  override async setup(): Promise<void> {
    this.started = { cpu: process.cpuUsage(), at: performance.now(), children: childrenCpuMs() };
    recordedStorages();
    await super.setup();
  }

  override async teardown(): Promise<void> {
    const used = recordedStorages();
    for (const storage of used) storage.disable();
    used.clear();
    await super.teardown();
    if (CPU_LOG) {
      const cpu = process.cpuUsage(this.started.cpu);
      const line = {
        file: this.file,
        wallMs: Math.round(performance.now() - this.started.at),
        cpuMs: Math.round((cpu.user + cpu.system) / 1000),
        childCpuMs: Math.round(childrenCpuMs() - this.started.children),
      };
      appendFileSync(CPU_LOG, `${JSON.stringify(line)}\n`);
    }
  }
}
