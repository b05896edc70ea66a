import { Logger } from '@nestjs/common';
import { refusedOriginLog } from './browser-security';

describe('refusedOriginLog', () => {
  const warned: string[] = [];
  let spy: jest.SpyInstance;
  beforeEach(() => {
    jest.useFakeTimers();
    warned.length = 0;
    spy = jest.spyOn(Logger.prototype, 'warn').mockImplementation((message: unknown) => {
      warned.push(String(message));
    });
  });
  afterEach(() => {
    spy.mockRestore();
    jest.useRealTimers();
  });
  const origins = (n: number, from = 0) =>
    Array.from({ length: n }, (_, i) => `https://scan${from + i}.example`);
  const named = () => warned.filter((w) => w.startsWith('a preflight from origin')).length;

  it('names each origin once a minute; its repeats are counted when the minute ends', () => {
    const refused = refusedOriginLog({ corsOrigins: ['https://shop.example'] });
    refused('https://shop.example');
    refused('https://scanner.example');
    jest.advanceTimersByTime(30_000);
    refused('https://scanner.example');
    refused('https://shop.exmple');
    expect(warned).toEqual([
      'a preflight from origin "https://scanner.example" was refused: it is not in CORS_ORIGINS (https://shop.example); this origin is said once a minute at most',
      'a preflight from origin "https://shop.exmple" was refused: it is not in CORS_ORIGINS (https://shop.example); this origin is said once a minute at most',
    ]);
    jest.advanceTimersByTime(30_000);
    expect(warned.slice(2)).toEqual([
      'a preflight from origin "https://scanner.example" was refused: it is not in CORS_ORIGINS (https://shop.example); this origin is said once a minute at most (1 more in 60 s)',
    ]);
    jest.advanceTimersByTime(30_000);
    // a minute quiet: forgotten, named again at once
    refused('https://shop.exmple');
    expect(warned.slice(3)).toEqual([
      expect.stringMatching(/^a preflight from origin "https:\/\/shop\.exmple" .*most$/),
    ]);
  });

  it('names 100 origins in a minute at most; the others share one line, counted a minute later', () => {
    const refused = refusedOriginLog({ corsOrigins: [] });
    warned.length = 0; // the boot warning about the empty list
    for (const origin of origins(100)) refused(origin);
    for (const origin of [...origins(5, 100), ...origins(5, 100)]) refused(origin);
    expect(named()).toBe(101);
    expect(warned[100]).toContain('"https://scan100.example"');
    expect(warned[100]).toContain('(and others: too many kinds to count apart)');
    expect(warned.join('\n')).not.toContain('scan101.');
    jest.advanceTimersByTime(60_000);
    expect(warned.slice(101)).toEqual([
      expect.stringMatching(/too many kinds to count apart\) \(9 more in 60 s\)$/),
    ]);
  });

  it('keeps at most 101 lines a minute however many origins', () => {
    const refused = refusedOriginLog({ corsOrigins: [] });
    warned.length = 0;
    for (const origin of origins(5000)) refused(origin);
    expect(warned).toHaveLength(101);
    jest.advanceTimersByTime(60_000);
    expect(warned).toHaveLength(102);
    expect(warned[101]).toMatch(/\(4899 more in 60 s\)$/);
  });

  it('names an origin by printable ASCII only: C1 controls (CSI, NEL), DEL and any other character escaped', () => {
    const refused = refusedOriginLog({ corsOrigins: ['https://shop.example'] });
    refused('https://a.example\x9b2J\x85\x7f\u00e9');
    expect(warned).toEqual([
      'a preflight from origin "https://a.example\\u009b2J\\u0085\\u007f\\u00e9" was refused: it is not in CORS_ORIGINS (https://shop.example); this origin is said once a minute at most',
    ]);
    expect(warned[0]).toMatch(/^[\x20-\x7e]*$/);
  });
});
