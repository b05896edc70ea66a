import { EventEmitter } from 'node:events';
import { logProcessWarnings } from './process-warnings';

// (a stand-in for `process`: jest's sandbox has a process object of its own, whose warnings
// Node emits on the real one; src/main.ts and src/worker.ts install it on the real process)
describe('logProcessWarnings', () => {
  const setup = (level: string) => {
    const lines: Record<string, unknown>[] = [];
    const target = new EventEmitter();
    const nodesPrinter = jest.fn();
    target.on('warning', nodesPrinter);
    logProcessWarnings(
      level,
      { write: (line: string) => void lines.push(JSON.parse(line)) },
      target as unknown as NodeJS.Process,
    );
    const warn = (message: string, code?: string) =>
      target.emit(
        'warning',
        Object.assign(new Error(message), { name: 'Warning' }, code ? { code } : {}),
      );
    return { lines, target, nodesPrinter, warn };
  };

  it("logs each warning as one JSON line at warn, in place of Node's printer", () => {
    const { lines, target, nodesPrinter, warn } = setup('info');
    expect(target.listenerCount('warning')).toBe(1);
    warn('a dependency says\nsomething on two lines', 'SHOP_TEST_WARNING');
    warn('no code');
    expect(nodesPrinter).not.toHaveBeenCalled();
    expect(lines).toEqual([
      expect.objectContaining({
        level: 40,
        context: 'Process',
        warning: 'Warning',
        code: 'SHOP_TEST_WARNING',
        msg: 'a dependency says\nsomething on two lines',
      }),
      expect.objectContaining({
        level: 40,
        context: 'Process',
        warning: 'Warning',
        msg: 'no code',
      }),
    ]);
    expect(lines[1]).not.toHaveProperty('code');
  });

  it('follows LOG_LEVEL: at error, a warning is not written', () => {
    const { lines, warn } = setup('error');
    warn('quiet');
    expect(lines).toEqual([]);
  });
});
