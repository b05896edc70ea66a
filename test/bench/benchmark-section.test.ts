import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runProvenance, withBenchmarkSection } from '../../bench/support';

/**
 * docs/BENCHMARKS.md's generated blocks say what they measured: the commit, whether the code
 * under src/, migrations/ or bench/ differed from it, and when — a block with none of that was
 * read as the figures of whatever commit the file sat in.
 */
describe('a generated benchmark block names the run', () => {
  let repo: string;
  const git = (...args: string[]) =>
    execFileSync('git', args, { cwd: repo, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const write = (path: string, text: string) => {
    mkdirSync(join(repo, path, '..'), { recursive: true });
    writeFileSync(join(repo, path), text);
  };

  beforeEach(() => {
    repo = mkdtempSync(join(tmpdir(), 'bench-provenance-'));
    git('init', '-q');
    for (const file of ['src/a.ts', 'migrations/1-a.ts', 'bench/b.ts', 'docs/B.md']) {
      write(file, 'x\n');
    }
    git('add', '.');
    git('-c', 'user.email=t@t', '-c', 'user.name=t', 'commit', '-q', '-m', 'init');
  });
  afterEach(() => rmSync(repo, { recursive: true, force: true }));

  it('names the commit and is clean when nothing measured differs from it', () => {
    const p = runProvenance(repo);
    expect(p.commit).toBe(git('rev-parse', '--short', 'HEAD').trim());
    expect(p.dirty).toBe(false);
  });

  it('is not dirty for a change outside src/, migrations/ and bench/', () => {
    write('docs/B.md', 'changed\n');
    write('notes.txt', 'new\n');
    expect(runProvenance(repo).dirty).toBe(false);
  });

  it.each([
    ['a changed source', 'src/a.ts'],
    ['a new migration', 'migrations/2-b.ts'],
    ['a new file in a new folder of bench/', 'bench/more/c.ts'],
    ['a changed lockfile', 'package-lock.json'],
    ['a changed tsconfig', 'tsconfig.json'],
  ])('is dirty for %s', (_what, path) => {
    write(path, 'changed\n');
    expect(runProvenance(repo).dirty).toBe(true);
  });

  it('outside a git checkout: the commit unknown, said so, and the run still measured', () => {
    const bare = mkdtempSync(join(tmpdir(), 'bench-nogit-'));
    try {
      const p = runProvenance(bare);
      expect(p.commit).toBe('unknown');
      expect(withBenchmarkSection('', 'x', 'Command: y', p)).toContain(
        'Run: commit unknown (not a git checkout)',
      );
    } finally {
      rmSync(bare, { recursive: true, force: true });
    }
  });

  it('puts commit, dirty flag, date and time under the heading of the block it writes', () => {
    const at = new Date('2026-12-07T14:03:59Z');
    const text = withBenchmarkSection(
      '# Benchmarks\n\n<!-- x:start -->\nold\n<!-- x:end -->\n\nprose\n',
      'x',
      '## X\n\nCommand: y\n',
      { commit: 'abc1234', dirty: true, at },
    );
    expect(text).toBe(
      '# Benchmarks\n\n<!-- x:start -->\n## X\n\n' +
        "Run: commit `abc1234` (**dirty**: uncommitted changes under src/, migrations/, bench/ or the build's files " +
        'were measured, not the commit alone), 2026-12-07 14:03 UTC.\n\n' +
        'Command: y\n<!-- x:end -->\n\nprose\n',
    );
    const clean = withBenchmarkSection('', 'x', 'Command: y', {
      commit: 'abc1234',
      dirty: false,
      at,
    });
    expect(clean).toContain(
      "Run: commit `abc1234` (clean: no uncommitted changes under src/, migrations/, bench/ or the build's files), " +
        '2026-12-07 14:03 UTC.\n\nCommand: y\n<!-- x:end -->',
    );
  });
});
