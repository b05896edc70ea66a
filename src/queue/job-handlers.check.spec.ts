import { missingHandlers } from './job-handlers.check';
import { JOB_QUEUE, JobName } from './queues';

describe('job handler check', () => {
  it('names every job without a handler', () => {
    const all = Object.keys(JOB_QUEUE) as JobName[];
    expect(missingHandlers(all)).toEqual([]);
    expect(missingHandlers(all.slice(1))).toEqual([all[0]]);
  });
});
