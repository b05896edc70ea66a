import { searchText } from './search-text';

describe('searchText', () => {
  it('makes a run of negations one, and leaves every single one as it stands', () => {
    expect(searchText('-'.repeat(33))).toBe('-');
    expect(searchText(`${'- '.repeat(40)}x`)).toBe('- x');
    expect(searchText(`${'-( '.repeat(40)}tea`)).toBe('-( tea');
    for (const q of [
      'tea -green',
      'tea - green',
      'tea -(green)',
      'tea -#1',
      'tea -"green tea"',
      'a-b-c',
    ])
      expect(searchText(q)).toBe(q);
  });

  it('applies NFKC first: fullwidth dashes are hyphens, and fullwidth letters words', () => {
    expect(searchText('\uFF0D'.repeat(3))).toBe('-');
    expect(searchText('\uFF0D\uFF54\uFF45\uFF41')).toBe('-tea');
  });
});
