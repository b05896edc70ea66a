import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

const MIGRATIONS = join(__dirname, '..', '..', 'migrations');

/**
 * A migration that has run somewhere is never edited, renamed or removed: TypeORM knows a migration
 * by its class name, and runs nothing it has recorded — an edit never reaches a database migrated
 * before it (a column a release's code then reads is missing there), and a rename is a "new"
 * migration that fails on objects already made (rolling-deploy review: both happened within a
 * session, before they landed). `migrations/checksums.sha256` (`sha256sum` format) holds every
 * migration's checksum: a new migration adds its line; any other change to that file is an edit
 * of a migration to undo — the change belongs in a new one.
 *
 * The one exception: an applied migration may be edited only so that it succeeds where it failed
 * (data an older migration left behind, a state an earlier version of a migration left), with a
 * resulting schema identical to what it makes where it succeeded — databases that ran it are then
 * untouched, and those it stopped go on. Its line here changes with it; the commit says so, and a
 * test runs it on the state it failed on (test/schema/upgrades-from-old-states.test.ts).
 */
describe('migrations are append-only', () => {
  const listed = readFileSync(join(MIGRATIONS, 'checksums.sha256'), 'utf8')
    .trim()
    .split('\n')
    .map((line) => {
      const [sum, file] = line.split(/\s+\*?/);
      return { sum, file };
    });
  const files = readdirSync(MIGRATIONS).filter((f) => f.endsWith('.ts'));

  it('every migration is listed with its checksum, and every listed one is there, unchanged', () => {
    expect(files.sort()).toEqual(listed.map((l) => l.file).sort());
    for (const { sum, file } of listed) {
      const actual = createHash('sha256')
        .update(readFileSync(join(MIGRATIONS, file)))
        .digest('hex');
      expect({ file, sum: actual }).toEqual({ file, sum });
    }
  });

  it('`npm run format` leaves every migration as it is (.prettierignore)', () => {
    // (prettier's API, outside jest: it loads its parsers by dynamic import)
    const ignored = JSON.parse(
      execFileSync(
        process.execPath,
        [
          '-e',
          `const { getFileInfo } = require('prettier');
           Promise.all(process.argv.slice(1).map((f) => getFileInfo(f, { ignorePath: '.prettierignore' })))
             .then((infos) => console.log(JSON.stringify(infos.map((i) => i.ignored))));`,
          ...files.map((f) => join('migrations', f)),
        ],
        { cwd: join(MIGRATIONS, '..'), encoding: 'utf8' },
      ),
    ) as boolean[];
    expect(ignored).toEqual(files.map(() => true));
  });

  it('a new migration comes after every listed one (TypeORM runs them by timestamp)', () => {
    const stamps = listed.map((l) => Number(/^(\d+)-/.exec(l.file)?.[1]));
    expect(stamps.every(Number.isFinite)).toBe(true);
    expect(stamps).toEqual([...stamps].sort((a, b) => a - b));
    expect(new Set(stamps).size).toBe(stamps.length);
  });
});
