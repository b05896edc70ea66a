import { normalizeEmail } from './email';

describe('normalizeEmail', () => {
  it('trims and lower-cases', () => {
    expect(normalizeEmail('  Asha.Rao@Example.COM \t')).toBe('asha.rao@example.com');
  });

  it('leaves a normalized email unchanged', () => {
    expect(normalizeEmail('a@b.io')).toBe('a@b.io');
  });
});
