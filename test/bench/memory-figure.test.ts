import { describeMemory } from '../../bench/support';

/**
 * The API's peak memory depends on the V8 heap flags it ran with (bench/support.ts runs it with
 * docker/Dockerfile's NODE_OPTIONS; without them V8 sizes its heap for ~4 GiB and the peak is
 * another figure): a block's memory figure names them.
 */
describe("a benchmark block's memory figure", () => {
  const flags = 'NODE_OPTIONS=`--max-old-space-size=384 --max-semi-space-size=12`';

  it("names the API's NODE_OPTIONS beside one process's peak", () => {
    const one = describeMemory({
      processes: [{ pid: 1, role: 'api', peakMiB: 192, rssMiB: 188 }],
      peakMiB: 192,
      totalRssMiB: 188,
    });
    expect(one).toBe(`192 MiB peak (now 188 MiB), ${flags}, as docker/Dockerfile sets them`);
  });

  it('and beside the per-process peaks of a primary with API processes, or none read', () => {
    const cluster = describeMemory({
      processes: [
        { pid: 1, role: 'primary', peakMiB: 60, rssMiB: 58 },
        { pid: 2, role: 'worker', peakMiB: 190, rssMiB: 180 },
      ],
      peakMiB: 190,
      totalRssMiB: 238,
    });
    expect(cluster).toContain('190 MiB peak per API process');
    expect(cluster).toContain(flags);
    expect(describeMemory(null)).toContain(flags);
  });
});
