import { CoalescedVersionReader } from './catalog-version';

describe('CoalescedVersionReader', () => {
  it('serves every request of one event-loop turn with one read issued after they all arrived', async () => {
    let version = 1;
    const read = jest.fn(async () => String(version));
    const reader = new CoalescedVersionReader(read);
    const batch = [reader.current(), reader.current(), reader.current()];
    version = 2; // a write that completed before the read was issued
    expect(await Promise.all(batch)).toEqual(['2', '2', '2']);
    expect(read).toHaveBeenCalledTimes(1);
  });

  it('a request arriving while a read is in flight waits for the next read', async () => {
    let release!: (v: string) => void;
    const read = jest
      .fn<Promise<string | undefined>, []>()
      .mockImplementationOnce(() => new Promise((r) => (release = r)))
      .mockResolvedValueOnce('8');
    const reader = new CoalescedVersionReader(read);
    const first = reader.current();
    await new Promise((r) => setImmediate(r)); // the first read is now in flight
    const second = reader.current();
    release('7');
    expect(await first).toBe('7');
    expect(await second).toBe('8');
    expect(read).toHaveBeenCalledTimes(2);
  });

  it('answers undefined when the store is unreachable', async () => {
    const reader = new CoalescedVersionReader(() => Promise.reject(new Error('ECONNREFUSED')));
    expect(await reader.current()).toBeUndefined();
  });
});
