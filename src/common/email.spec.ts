import { normalizeEmail } from './email';

describe('normalizeEmail', () => {
  it('trims and lower-cases', () => {
    expect(normalizeEmail('  Asha.Rao@Example.COM \t')).toBe('asha.rao@example.com');
  });

  it('leaves a normalized email unchanged', () => {
    expect(normalizeEmail('a@b.io')).toBe('a@b.io');
  });
});

describe('normalizeEmail, Unicode', () => {
  it('composes a decomposed accent (NFC), so both spellings are one address', () => {
    const composed = 'jos\u00e9@example.com';
    expect(normalizeEmail(composed.normalize('NFD'))).toBe(composed);
    expect(normalizeEmail('JOSE\u0301@EXAMPLE.COM')).toBe(composed);
  });
});
