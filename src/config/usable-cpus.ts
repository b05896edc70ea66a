import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';

/** Where the process's CPU quota is read from (cgroup v2, then v1). */
interface CpuSources {
  parallelism: () => number;
  read: (path: string) => string | undefined;
}

const fromSystem: CpuSources = {
  parallelism: availableParallelism,
  read: (path) => {
    try {
      return readFileSync(path, 'utf8');
    } catch {
      return undefined;
    }
  },
};

/** A quota over a period, as whole CPUs (rounded up, at least 1); undefined when there is none. */
function quotaCpus(quota: number, period: number): number | undefined {
  if (!Number.isFinite(quota) || !Number.isFinite(period) || quota <= 0 || period <= 0)
    return undefined;
  return Math.max(1, Math.ceil(quota / period));
}

/**
 * The CPUs this process can really use: the CPUs it may run on (os.availableParallelism — on
 * Node 20, libuv counts those only, a 96-CPU host's all 96 in a container limited to 2) and its
 * cgroup's CPU quota (`docker run --cpus`, a Kubernetes CPU limit), whichever is smaller; at least 1.
 */
export function usableCpus(sources: CpuSources = fromSystem): number {
  let cpus = Math.max(1, sources.parallelism());
  const v2 = sources.read('/sys/fs/cgroup/cpu.max')?.trim().split(/\s+/);
  if (v2 && v2[0] !== 'max') {
    const limit = quotaCpus(Number(v2[0]), Number(v2[1]));
    if (limit) cpus = Math.min(cpus, limit);
    return cpus;
  }
  const quota = Number(sources.read('/sys/fs/cgroup/cpu/cpu.cfs_quota_us')?.trim());
  const limit = quotaCpus(
    quota,
    Number(sources.read('/sys/fs/cgroup/cpu/cpu.cfs_period_us')?.trim()),
  );
  return limit ? Math.min(cpus, limit) : cpus;
}
