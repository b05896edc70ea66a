import { BIGINT_NUMBER, CURRENCY_CODE } from './column-transformers';

describe('column transformers', () => {
  it('reads bigint strings as exact integers and refuses unsafe ones', () => {
    expect(BIGINT_NUMBER.from('24900')).toBe(24900);
    expect(BIGINT_NUMBER.from(7)).toBe(7);
    expect(BIGINT_NUMBER.from(null)).toBeNull();
    expect(() => BIGINT_NUMBER.from('9007199254740993')).toThrow(/safe integer/);
    expect(BIGINT_NUMBER.to(24900)).toBe(24900);
  });

  it('reads char(3) currency codes without their padding', () => {
    expect(CURRENCY_CODE.from('INR')).toBe('INR');
    expect(CURRENCY_CODE.from('EU ')).toBe('EU');
    expect(CURRENCY_CODE.from(null)).toBeNull();
    expect(CURRENCY_CODE.to('INR')).toBe('INR');
  });
});
