import pino from 'pino';
import { LOG_OPTIONS } from './error-serializer';

/** The exit code of a crash: Node's own for an uncaught exception. */
const CRASH_EXIT_CODE = 1;

/**
 * An uncaught exception or an unhandled rejection ends the process as it did (exit 1: state it
 * left half-changed is never served on), but says so first in one JSON line at `fatal` — Node
 * printed its multi-line dump of the error to stderr, which a pipeline reading JSON lines cannot
 * parse, and the crash of a process every other line of which is JSON was found in no query.
 * Written synchronously before the exit, with the loggers' serializer and redaction (the error
 * by its type, message, stack and code), whatever LOG_LEVEL says (Node's dump ignored it too).
 * Installed first thing by the API and the worker (main.ts, worker.ts), before the configuration
 * is read.
 */
export function exitOnCrash(
  destination: pino.DestinationStream = pino.destination({ dest: 1, sync: true }),
  target: Pick<NodeJS.Process, 'on'> = process,
  exit: (code: number) => void = (code) => process.exit(code),
): void {
  const log = pino({ ...LOG_OPTIONS, level: 'fatal' }, destination).child({ context: 'Process' });
  const crash = (what: string) => (err: unknown) => {
    try {
      log.fatal({ err }, `${what}; exiting`);
    } finally {
      // (also when the line could not be written: a closed stdout)
      exit(CRASH_EXIT_CODE);
    }
  };
  target.on('uncaughtException', crash('uncaught exception'));
  // (with a listener Node no longer turns a rejection into an uncaught exception: this one exits)
  target.on('unhandledRejection', crash('unhandled rejection'));
}
