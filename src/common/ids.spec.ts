import { uuidFromName } from './ids';

describe('uuidFromName', () => {
  it('is deterministic, distinct per name, and a valid version-5 UUID', () => {
    const a = uuidFromName('refund:user:1:key-1');
    expect(uuidFromName('refund:user:1:key-1')).toBe(a);
    expect(uuidFromName('refund:user:1:key-2')).not.toBe(a);
    expect(a).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });
});
