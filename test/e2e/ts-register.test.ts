import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ROOT } from '../support/processes';

const run = promisify(execFile);

/** scripts/ts-register.js: how `npm start`, the CLIs, the drill and the tests' processes run .ts */
describe('scripts/ts-register.js', () => {
  let dir: string;
  beforeAll(() => {
    // inside the project (var/, ignored by git): its packages resolve from there
    mkdirSync(join(ROOT, 'var'), { recursive: true });
    dir = mkdtempSync(join(ROOT, 'var', 'ts-register-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const node = (file: string) =>
    run(process.execPath, ['-r', join(ROOT, 'scripts', 'ts-register.js'), file], { cwd: ROOT }).then(
      (r) => ({ code: 0, out: r.stdout + r.stderr }),
      (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout + e.stderr }),
    );

  it('runs what the file says now: an edited file is transpiled again, not read from the cache', async () => {
    const file = join(dir, 'edited.ts');
    writeFileSync(file, "const said: string = 'first';\nconsole.log(said);\n");
    expect(await node(file)).toEqual({ code: 0, out: 'first\n' });
    expect(await node(file)).toEqual({ code: 0, out: 'first\n' }); // (from the cache)
    writeFileSync(file, "const said: string = 'second';\nconsole.log(said);\n");
    expect(await node(file)).toEqual({ code: 0, out: 'second\n' });
  });

  it("stack traces name the .ts source's lines, not the transpiled ones; decorators get their metadata", async () => {
    const file = join(dir, 'trace.ts');
    writeFileSync(
      file,
      [
        "import 'reflect-metadata';",
        'interface Shape { sides: number }',
        'const seen = (_t: object, _k: string) => undefined;',
        'class Box {',
        '  @seen',
        '  size!: number;',
        '}',
        "console.log(String(Reflect.getMetadata('design:type', Box.prototype, 'size')?.name));",
        'function fail(shape: Shape): never {',
        '  throw new Error(`no ${shape.sides}`);',
        '}',
        'fail({ sides: 3 });',
        '',
      ].join('\n'),
    );
    const { code, out } = await node(file);
    expect(code).toBe(1);
    expect(out).toContain('Number\n');
    expect(out).toContain('Error: no 3');
    expect(out).toContain(`at fail (${file}:10:9)`);
    expect(out).toContain(`(${file}:12:1)`);
  });
});
