import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runScript } from '../support/processes';

const SECRET = 'victim@example.com';

/**
 * A process that crashes (an uncaught exception, an unhandled rejection) says so in one JSON line
 * at fatal and exits 1 — Node's own multi-line dump on stderr was no JSON. Each entry point is
 * run with a preloaded file that throws, or rejects, on the first timer (its module has installed
 * its handlers by then); no database is reached before it.
 */
describe('a crash of the API or the worker (real processes)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'shop-crash-'));
  const preload = (name: string, code: string) => {
    const file = join(dir, `${name}.js`);
    writeFileSync(file, code);
    return file;
  };
  const drill = `Object.assign(new Error('crash drill'), { code: 'EDRILL', parameters: ['${SECRET}'] })`;
  const crashes = {
    'uncaught exception': preload('throws', `setTimeout(() => { throw ${drill}; }, 0);`),
    'unhandled rejection': preload(
      'rejects',
      `setTimeout(() => { Promise.reject(${drill}); }, 0);`,
    ),
  };
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  for (const script of ['src/main.ts', 'src/worker.ts']) {
    for (const [what, file] of Object.entries(crashes)) {
      it(`${script}: an ${what} is one fatal JSON line through the loggers' serializer, then exit 1`, async () => {
        // (LOG_LEVEL silent: a crash is said whatever the level, as Node's dump was)
        const p = runScript(script, { NODE_OPTIONS: `--require ${file}` }, 'silent');
        expect(await p.exited).toBe(1);
        const lines = p.output().trim().split('\n');
        expect(lines).toHaveLength(1);
        const line = JSON.parse(lines[0]) as Record<string, unknown>;
        expect(line).toMatchObject({
          level: 60,
          context: 'Process',
          msg: `${what}; exiting`,
          err: { type: 'Error', message: 'crash drill', code: 'EDRILL' },
        });
        expect((line.err as { stack: string }).stack).toContain('crash drill');
        expect(lines[0]).not.toContain(SECRET);
      }, 60_000);
    }
  }
});
