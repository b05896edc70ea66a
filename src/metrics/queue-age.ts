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

/** The longest any of `jobs` has been ready to run at `now` (ms), in seconds; 0 for none. */
export function oldestWaitingAgeSeconds(jobs: readonly WaitingJob[], now: number): number {
  if (jobs.length === 0) return 0;
  const since = Math.min(...jobs.map(readySince));
  return Math.max(0, now - since) / 1000;
}

/**
 * For each queue (KEYS: its `wait`, `paused` and `prioritized` keys, three a queue; ARGV: its job
 * keys' prefix, `<prefix>:bull:<queue>:`), the jobs that may be its oldest ready one, each as
 * `{timestamp, processedOn or '', delay}`: both ends of `wait` (FIFO jobs are pushed on the left and
 * taken from the right, so its right end is the oldest; LIFO ones are pushed on the right) and of
 * `paused` (a paused queue's `wait`, renamed), and in `prioritized` (scored priority × 2³² + an
 * insertion counter: first within a priority is oldest there) the first of the highest priority
 * and the first of the lowest. At most 6 jobs a queue, whatever the backlog: a priority between
 * the highest and the lowest is not looked at (no job of this app has a priority). A job removed
 * since its id was read is left out.
 */
const OLDEST_WAITING_SCRIPT = `
local result = {}
for q = 1, #ARGV do
  local base = ARGV[q]
  local wait, paused, prioritized = KEYS[q * 3 - 2], KEYS[q * 3 - 1], KEYS[q * 3]
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
  result[q] = jobs
end
return result
`;

/**
 * Each of `queues`' jobs that may be its oldest ready one (OLDEST_WAITING_SCRIPT): one script,
 * one round trip, a bounded number of reads per queue whatever the backlog.
 */
export async function readWaitingJobs(
  redis: Pick<Redis, 'eval'>,
  prefix: string,
  queues: readonly string[],
): Promise<WaitingJob[][]> {
  const keys = queues.flatMap((q) => [
    `${prefix}:${q}:wait`,
    `${prefix}:${q}:paused`,
    `${prefix}:${q}:prioritized`,
  ]);
  const bases = queues.map((q) => `${prefix}:${q}:`);
  const reply = (await redis.eval(OLDEST_WAITING_SCRIPT, keys.length, ...keys, ...bases)) as
    string[][][] | null;
  return queues.map((_, i) =>
    (reply?.[i] ?? []).flatMap(([timestamp, processedOn, delay]) => {
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
  );
}

/** A hash field's number of ms; undefined for none or not a number. */
function millisOf(field: string | undefined): number | undefined {
  const n = field ? Number(field) : NaN;
  return Number.isFinite(n) ? n : undefined;
}
