import { usableCpus } from './usable-cpus';

const host = (parallelism: number, files: Record<string, string>) => ({
  parallelism: () => parallelism,
  read: (path: string) => files[path],
});

describe('usableCpus', () => {
  it("is the container's CPU quota when it is below the host's CPUs (cgroup v2, rounded up)", () => {
    expect(usableCpus(host(96, { '/sys/fs/cgroup/cpu.max': '200000 100000\n' }))).toBe(2);
    expect(usableCpus(host(96, { '/sys/fs/cgroup/cpu.max': '150000 100000' }))).toBe(2);
    expect(usableCpus(host(96, { '/sys/fs/cgroup/cpu.max': '10000 100000' }))).toBe(1);
  });

  it('is the CPUs the process may run on without a quota, or when the quota is above them', () => {
    expect(usableCpus(host(8, { '/sys/fs/cgroup/cpu.max': 'max 100000' }))).toBe(8);
    expect(usableCpus(host(2, { '/sys/fs/cgroup/cpu.max': '800000 100000' }))).toBe(2);
    expect(usableCpus(host(4, {}))).toBe(4);
  });

  it('reads cgroup v1 when there is no v2 file (-1: no quota)', () => {
    const v1 = (quota: string) =>
      host(32, {
        '/sys/fs/cgroup/cpu/cpu.cfs_quota_us': quota,
        '/sys/fs/cgroup/cpu/cpu.cfs_period_us': '100000\n',
      });
    expect(usableCpus(v1('300000\n'))).toBe(3);
    expect(usableCpus(v1('-1\n'))).toBe(32);
  });

  it('ignores what it cannot read as numbers', () => {
    expect(usableCpus(host(4, { '/sys/fs/cgroup/cpu.max': 'garbage' }))).toBe(4);
    expect(usableCpus(host(0, {}))).toBe(1);
  });
});
