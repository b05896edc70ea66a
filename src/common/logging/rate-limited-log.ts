/** One key's window: the lines held back in it, and how to write the one that counts them. */
interface Window {
  held: number;
  line: string;
  write: (line: string) => void;
}

/**
 * At most one line per key and window: the first at once; those that follow within the window
 * are held back and counted, and when the window ends one line says how many there were
 * (`… (N more in 10 s)`) and opens the next window — so a flood is one line per window, none
 * of it lost count of, and a key quiet for a window is forgotten. A Redis refusing writes
 * (OOM under `noeviction`) drove a BullMQ worker's fetch loop, which retries with no pause,
 * to log 2,500–5,000 lines a second.
 *
 * Past `maxKeys` keys in their window at once (messages that differ every time) the rest share
 * one key, so the lines stay bounded however many kinds there are.
 */
export class RateLimitedLog {
  private readonly windows = new Map<string, Window>();

  constructor(
    private readonly windowMs = 10_000,
    private readonly maxKeys = 1_000,
  ) {}

  /** Writes `line` (with `write`) unless a line of `key` was written within the window. */
  write(key: string, line: string, write: (line: string) => void): void {
    const window = this.windows.get(key);
    if (window) {
      window.held++;
      window.line = line;
      window.write = write;
      return;
    }
    if (key !== OVERFLOW && this.windows.size >= this.maxKeys) {
      this.write(OVERFLOW, `${line} (and others: too many kinds to count apart)`, write);
      return;
    }
    write(line);
    this.open(key, { held: 0, line, write });
  }

  private open(key: string, window: Window): void {
    this.windows.set(key, window);
    setTimeout(() => this.close(key, window), this.windowMs).unref();
  }

  private close(key: string, window: Window): void {
    this.windows.delete(key);
    if (window.held === 0) return;
    window.write(`${window.line} (${window.held} more in ${this.windowMs / 1000} s)`);
    this.open(key, { held: 0, line: window.line, write: window.write });
  }
}

const OVERFLOW = '\0overflow';
