import { searchText } from './search-text';

describe('searchText', () => {
  it('makes a long run of negations one (odd) or none (even), as PostgreSQL reads them', () => {
    expect(searchText('-'.repeat(33))).toBe('-');
    expect(searchText('-'.repeat(40))).toBe(' ');
    expect(searchText(`${'- '.repeat(41)}x`)).toBe('- x');
    expect(searchText(`${'-( '.repeat(40)}tea`)).toBe(' ( tea');
  });

  it('leaves short runs and single negations as typed', () => {
    for (const q of [
      'tea -green',
      'tea - green',
      'tea -(green)',
      'tea -#1',
      'tea -"green tea"',
      'a-b-c',
      'tea -- green',
      'foo--bar',
      'a -.- b',
      '--------',
    ])
      expect(searchText(q)).toBe(q);
  });

  it('applies NFKC first: fullwidth dashes are hyphens, and fullwidth letters words', () => {
    expect(searchText('\uFF0D'.repeat(9))).toBe('-');
    expect(searchText('\uFF0D\uFF54\uFF45\uFF41')).toBe('-tea');
  });
});
