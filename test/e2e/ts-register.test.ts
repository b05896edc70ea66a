import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import * as ts from 'typescript';
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
    run(process.execPath, ['-r', join(ROOT, 'scripts', 'ts-register.js'), file], {
      cwd: ROOT,
    }).then(
      (r) => ({ code: 0, out: r.stdout + r.stderr }),
      (e: { code: number; stdout: string; stderr: string }) => ({
        code: e.code,
        out: e.stdout + e.stderr,
      }),
    );

  it('runs what the file says now: an edited file is transpiled again, not read from the cache', async () => {
    const file = join(dir, 'edited.ts');
    writeFileSync(file, "const said: string = 'first';\nconsole.log(said);\n");
    expect(await node(file)).toEqual({ code: 0, out: 'first\n' });
    expect(await node(file)).toEqual({ code: 0, out: 'first\n' }); // (from the cache)
    writeFileSync(file, "const said: string = 'second';\nconsole.log(said);\n");
    expect(await node(file)).toEqual({ code: 0, out: 'second\n' });
  });

  it("loads swc only to transpile: a start whose files are all cached never loads it (~0.05 CPU-s of every process's start)", async () => {
    const file = join(dir, 'cached.ts');
    writeFileSync(
      file,
      `const swc: boolean = Object.keys(require.cache).some((k) => k.includes('@swc'));\nconsole.log(swc ? 'swc loaded' : 'no swc');\n`,
    );
    // (the first start transpiles the file: swc is loaded before the file runs)
    expect(await node(file)).toEqual({ code: 0, out: 'swc loaded\n' });
    expect(await node(file)).toEqual({ code: 0, out: 'no swc\n' });
  });

  it('a cached file that was cut short is not used: the source is transpiled again', async () => {
    const file = join(dir, 'damaged.ts');
    const marker = `marker-${process.pid}-${Date.now()}`;
    writeFileSync(file, `const said: string = '${marker}';\nconsole.log(said);\n`);
    expect(await node(file)).toEqual({ code: 0, out: `${marker}\n` });
    const cacheDir = join(ROOT, 'node_modules', '.cache', 'ts-register');
    const cached = readdirSync(cacheDir).filter((f) =>
      readFileSync(join(cacheDir, f), 'utf8').includes(marker),
    );
    expect(cached).toHaveLength(1);
    writeFileSync(join(cacheDir, cached[0]), '"use strict";\n'); // as a crash before the data reached the disk
    expect(await node(file)).toEqual({ code: 0, out: `${marker}\n` });
  });

  it("transpiles with tsc's semantics for tsconfig.json (which builds dist/): the options in scripts/swc-options.js follow it", () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const swc = require(join(ROOT, 'scripts', 'swc-options.js'));
    const config = ts.getParsedCommandLineOfConfigFile(
      join(ROOT, 'tsconfig.json'),
      {},
      {
        ...ts.sys,
        onUnRecoverableConfigFileDiagnostic: (d) => {
          throw new Error(ts.flattenDiagnosticMessageText(d.messageText, '\n'));
        },
      },
    )!.options;
    expect(ts.ScriptTarget[config.target!].toLowerCase()).toBe(swc.jsc.target);
    expect(config.module).toBe(ts.ModuleKind.CommonJS);
    expect(swc.module.type).toBe('commonjs');
    // class fields by define when the target is ES2022 or later, unless said otherwise
    expect(config.useDefineForClassFields ?? config.target! >= ts.ScriptTarget.ES2022).toBe(
      swc.jsc.transform.useDefineForClassFields,
    );
    expect(config.experimentalDecorators).toBe(swc.jsc.parser.decorators);
    expect(config.experimentalDecorators).toBe(swc.jsc.transform.legacyDecorator);
    expect(config.emitDecoratorMetadata).toBe(swc.jsc.transform.decoratorMetadata);
    expect(!config.esModuleInterop).toBe(swc.module.noInterop);
    expect(config.alwaysStrict ?? config.strict).toBe(swc.module.strictMode);
    expect(config.target! >= ts.ScriptTarget.ES2016).toBe(swc.jsc.keepClassNames);
    expect(config.paths).toBeUndefined(); // (swc would not map them)
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
