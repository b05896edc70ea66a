import type { INestApplicationContext } from '@nestjs/common';
import { closeOnSignals } from '../../src/common/shutdown';

/**
 * A process whose app takes a second to close (a drain in progress), for process.test.ts:
 * prints `ready`, then `closing` when its close starts and `closed` when it ends.
 */
const app = {
  close: async () => {
    console.log('closing');
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    console.log('closed');
  },
} as unknown as INestApplicationContext;
closeOnSignals(app, 10_000);
setInterval(() => undefined, 1_000); // stays up until a signal closes it
console.log('ready');
