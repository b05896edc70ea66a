import type Redis from 'ioredis';

/**
 * A job waiting to run, as its hash has it (ms since the epoch, on the clock of the process that
 * wrote each): `timestamp` its creation, `delay` the larger of the hash's and its options' (BullMQ
 * zeroes the hash's when a worker promotes a delayed job to `wait`; its options keep the one it
 * was added with), `processedOn` the start of its last attempt, if it had one.
 */
export interface WaitingJob {
  timestamp: number;
  delay: number;
  processedOn?: number;
}

/**
 * Since when a waiting job has been ready to run: a delayed one from the end of its delay (it was
 * not waiting before), one back in `wait` after an attempt (a retry, a stall) from that attempt's
 * start — BullMQ keeps no time of its return, so its backoff counts too — any other from its
 * creation.
 */
export function readySince(job: WaitingJob): number {
  return job.processedOn !== undefined ? job.processedOn : job.timestamp + job.delay;
}

/**
 * What a queue's oldest job ready to run may be: the jobs read from `wait`, `paused` and
 * `prioritized`, and when the first job of `delayed` is due. BullMQ moves a delayed job to `wait`
 * only when a worker fetches: with none consuming (stopped, crashed, blocked) a job past its due
 * time stays in `delayed` — ready to run, waiting for a worker all the same.
 */
export interface QueueHeads {
  waiting: WaitingJob[];
  /**
   * When the first job of `delayed` is due (ms since the epoch, from its score: on the clock of
   * the process that delayed it, as a job's `timestamp` is); absent when none is delayed.
   */
  firstDueAt?: number;
}

/**
 * The longest any job of a queue has been ready to run at `now` (ms), in seconds: the waiting
 * jobs' since they were ready, the first delayed job's since it was due if it is (not yet due:
 * not counted); 0 for none.
 */
export function oldestWaitingAgeSeconds(heads: QueueHeads, now: number): number {
  const since = heads.waiting.map(readySince);
  if (heads.firstDueAt !== undefined && heads.firstDueAt <= now) since.push(heads.firstDueAt);
  if (since.length === 0) return 0;
  return Math.max(0, now - Math.min(...since)) / 1000;
}

/**
 * When a delayed job is due, from its score in `delayed`: BullMQ scores it its due time (ms) ×
 * 0x1000 + a counter below 0x1000 that orders the jobs due in the same ms (`getDelayedScore`,
 * used by every script that puts a job there: an add with a delay, a retry's backoff, a changed
 * delay, a job scheduler's next run — due at its `nextMillis`). Undefined for no score.
 */
export function dueAtOfScore(score: string | undefined): number | undefined {
  const n = score ? Number(score) : NaN;
  return Number.isFinite(n) ? Math.floor(n / 0x1000) : undefined;
}

/**
 * For each queue (KEYS: its `wait`, `paused`, `prioritized` and `delayed` keys, four a queue;
 * ARGV: its job keys' prefix, `<prefix>:bull:<queue>:`), `{jobs, score}`: the jobs that may be its
 * oldest ready one, each as `{timestamp, processedOn or '', delay}` — both ends of `wait` (FIFO
 * jobs are pushed on the left and taken from the right, so its right end is the oldest; LIFO ones
 * are pushed on the right) and of `paused` (a paused queue's `wait`, renamed), and in
 * `prioritized` (scored priority × 2³² + an insertion counter: first within a priority is oldest
 * there) the first of the highest priority and the first of the lowest — and the score of the
 * first job of `delayed` (the soonest due; '' for none). At most 6 job hashes and 1 entry of
 * `delayed` a queue, whatever the backlog: a priority between the highest and the lowest is not
 * looked at (no job of this app has a priority). A job removed since its id was read is left out.
 */
const OLDEST_WAITING_SCRIPT = `
local result = {}
for q = 1, #ARGV do
  local base = ARGV[q]
  local wait, paused, prioritized, delayed = KEYS[q * 4 - 3], KEYS[q * 4 - 2], KEYS[q * 4 - 1], KEYS[q * 4]
  local ids = {}
  for _, list in ipairs({ wait, paused }) do
    ids[#ids + 1] = redis.call('LINDEX', list, -1)
    ids[#ids + 1] = redis.call('LINDEX', list, 0)
  end
  ids[#ids + 1] = redis.call('ZRANGE', prioritized, 0, 0)[1]
  local last = redis.call('ZRANGE', prioritized, -1, -1, 'WITHSCORES')
  if last[2] then
    local floor = math.floor(tonumber(last[2]) / 4294967296) * 4294967296
    ids[#ids + 1] = redis.call('ZRANGEBYSCORE', prioritized, string.format('%.0f', floor), '+inf', 'LIMIT', 0, 1)[1]
  end
  local jobs, seen = {}, {}
  for i = 1, #ids do
    local id = ids[i]
    if id and not seen[id] then
      seen[id] = true
      local f = redis.call('HMGET', base .. id, 'timestamp', 'processedOn', 'delay', 'opts')
      if f[1] then
        local delay = tonumber(f[3]) or 0
        if f[4] then
          local ok, opts = pcall(cjson.decode, f[4])
          if ok and type(opts) == 'table' and tonumber(opts['delay']) then
            delay = math.max(delay, tonumber(opts['delay']))
          end
        end
        jobs[#jobs + 1] = { f[1], f[2] or '', string.format('%.0f', delay) }
      end
    end
  end
  result[q] = { jobs, redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')[2] or '' }
end
return result
`;

/**
 * Each of `queues`' heads (OLDEST_WAITING_SCRIPT): one script, one round trip, a bounded number
 * of reads per queue whatever the backlog.
 */
export async function readWaitingJobs(
  redis: Pick<Redis, 'eval'>,
  prefix: string,
  queues: readonly string[],
): Promise<QueueHeads[]> {
  const keys = queues.flatMap((q) => [
    `${prefix}:${q}:wait`,
    `${prefix}:${q}:paused`,
    `${prefix}:${q}:prioritized`,
    `${prefix}:${q}:delayed`,
  ]);
  const bases = queues.map((q) => `${prefix}:${q}:`);
  const reply = (await redis.eval(OLDEST_WAITING_SCRIPT, keys.length, ...keys, ...bases)) as
    [string[][], string][] | null;
  return queues.map((_, i) => {
    const [jobs, score] = reply?.[i] ?? [[], ''];
    const firstDueAt = dueAtOfScore(score);
    return {
      waiting: jobs.flatMap(([timestamp, processedOn, delay]) => {
        const created = millisOf(timestamp);
        if (created === undefined) return []; // (a hash BullMQ did not write: nothing to say of it)
        const attempted = millisOf(processedOn);
        return [
          {
            timestamp: created,
            delay: millisOf(delay) ?? 0,
            ...(attempted !== undefined ? { processedOn: attempted } : {}),
          },
        ];
      }),
      ...(firstDueAt !== undefined ? { firstDueAt } : {}),
    };
  });
}

/** A hash field's number of ms; undefined for none or not a number. */
function millisOf(field: string | undefined): number | undefined {
  const n = field ? Number(field) : NaN;
  return Number.isFinite(n) ? n : undefined;
}
