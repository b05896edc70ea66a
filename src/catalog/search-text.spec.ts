import { searchText } from './search-text';

describe('searchText', () => {
  it('keeps a negation of a word, and makes a hyphen that negates nothing a space', () => {
    expect(searchText('tea -green')).toBe('tea -green');
    expect(searchText('tea -"green tea" -\'x\' -_y -1 -é')).toBe(
      'tea -"green tea" -\'x\' -_y -1 -é',
    );
    expect(searchText('-'.repeat(5))).toBe(' '.repeat(5));
    expect(searchText('tea - green')).toBe('tea   green');
    expect(searchText('-( -! -😀')).toBe(' (  !  😀');
  });

  it('applies NFKC first: fullwidth dashes are hyphens, and fullwidth letters words', () => {
    expect(searchText('\uFF0D'.repeat(3))).toBe('   ');
    expect(searchText('\uFF0D\uFF54\uFF45\uFF41')).toBe('-tea');
  });
});
