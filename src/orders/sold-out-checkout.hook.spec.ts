import { unverifiedSubject } from './sold-out-checkout.hook';

const part = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

describe('unverifiedSubject (what the first hook looks a refusal up for)', () => {
  it('reads the sub claim of a JWT without verifying it', () => {
    expect(unverifiedSubject(`${part({ alg: 'HS256' })}.${part({ sub: 'u-1', typ: 'access' })}.sig`)).toBe('u-1');
  });

  it.each([
    ['no dots', 'abc'],
    ['an empty header', `.${part({ sub: 'u-1' })}.sig`],
    ['one dot', `${part({})}.${part({ sub: 'u-1' })}`],
    ['a payload that is not JSON', `${part({})}.bm90IGpzb24.sig`],
    ['no sub', `${part({})}.${part({ typ: 'access' })}.sig`],
    ['a numeric sub', `${part({})}.${part({ sub: 1 })}.sig`],
    ['an empty sub', `${part({})}.${part({ sub: '' })}.sig`],
    ['a payload that is null', `${part({})}.${part(null)}.sig`],
  ])('null for %s', (_name, token) => {
    expect(unverifiedSubject(token)).toBeNull();
  });
});
