import { resolveRequestId } from './request-id';

describe('resolveRequestId', () => {
  it('keeps a well-formed incoming id', () => {
    expect(resolveRequestId('req-12345678')).toBe('req-12345678');
  });
  it('replaces a malformed id (spaces, newlines, too long) with a UUID', () => {
    for (const bad of ['has space in it', 'x\ny-12345678', 'a'.repeat(200), 'short', '']) {
      const id = resolveRequestId(bad);
      expect(id).not.toBe(bad);
      expect(id).toMatch(/^[0-9a-f-]{36}$/);
    }
  });
  it('generates one when absent', () => {
    expect(resolveRequestId(undefined)).toMatch(/^[0-9a-f-]{36}$/);
  });
});
