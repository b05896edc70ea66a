import { inboxKey, normalizeEmail } from './email';

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

describe('inboxKey', () => {
  it('counts the sub-addresses of one inbox as one: +tags, and Gmail dots and alias domain', () => {
    expect(inboxKey('Victim+1@Example.com')).toBe('victim@example.com');
    expect(inboxKey('vic.tim+promo@googlemail.com')).toBe('victim@gmail.com');
    expect(inboxKey('v.ictim@gmail.com')).toBe('victim@gmail.com');
    expect(inboxKey('first.last@outlook.com')).toBe('first.last@outlook.com'); // dots count elsewhere
  });

  it("folds the providers whose one mailbox has several names: Proton's domains and ignored . _ -, iCloud's, Fastmail's subdomains (mail review: 30 cancellation emails to one Proton mailbox)", () => {
    for (const address of [
      'firstlast@proton.me',
      'first.last@proton.me',
      'first_last@pm.me',
      'First-Last+shop@protonmail.com',
      'f.i_r-st.last@protonmail.ch',
    ])
      expect([address, inboxKey(address)]).toEqual([address, 'firstlast@proton.me']);
    for (const address of ['asha@icloud.com', 'Asha@me.com', 'asha+x@mac.com'])
      expect([address, inboxKey(address)]).toEqual([address, 'asha@icloud.com']);
    expect(inboxKey('anything@asha.fastmail.com')).toBe('asha@fastmail.com');
    expect(inboxKey('asha+tag@fastmail.com')).toBe('asha@fastmail.com');
    // dots and other domains stay where they count
    expect(inboxKey('a.sha@icloud.com')).toBe('a.sha@icloud.com');
    expect(inboxKey('x@a.b.fastmail.com')).toBe('x@a.b.fastmail.com');
  });
});
