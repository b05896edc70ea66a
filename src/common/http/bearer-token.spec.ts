import { bearerToken } from './bearer-token';

describe('bearerToken', () => {
  it('reads the token after the scheme in any case and one or more spaces (RFC 6750 2.1: 1*SP)', () => {
    for (const header of [
      'Bearer abc.def',
      'bearer abc.def',
      'BEARER  abc.def',
      'Bearer    abc.def',
    ]) {
      expect([header, bearerToken(header)]).toEqual([header, 'abc.def']);
    }
  });
  it('is null without a header, without a token, for another scheme or separator, or for two words', () => {
    for (const header of [
      undefined,
      ['Bearer abc'],
      '',
      'Bearer',
      'Bearer ',
      'Bearerabc.def',
      'Bearer\tabc.def',
      'Basic abc.def',
      'Bearer abc def',
      'Bearer abc\tdef',
    ]) {
      expect([header, bearerToken(header)]).toEqual([header, null]);
    }
  });
});
