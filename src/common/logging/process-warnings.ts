import pino from 'pino';

/**
 * Node's process warnings (deprecations; a dependency's notices, such as the AWS SDK's about
 * the Node version) as one JSON log line each at `warn`, like every other line the process
 * writes, instead of Node's own multi-line text on stderr, which a pipeline reading JSON lines
 * cannot parse. Installed first thing: a warning is emitted on a later tick than it is raised,
 * so one raised while the application boots is logged here too.
 */
export function logProcessWarnings(
  level: string,
  destination: pino.DestinationStream = pino.destination(1),
  target: Pick<NodeJS.Process, 'removeAllListeners' | 'on'> = process,
): void {
  const log = pino({ level }, destination).child({ context: 'Process' });
  target.removeAllListeners('warning'); // Node's printer
  target.on('warning', (warning: Error & { code?: string }) => {
    log.warn(
      { warning: warning.name, ...(warning.code ? { code: warning.code } : {}) },
      warning.message,
    );
  });
}
