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

  it('names each origin once a minute, and again after its minute', () => {
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
    refused('https://scanner.example');
    refused('https://shop.exmple');
    expect(warned).toHaveLength(3);
    expect(warned[2]).toContain('"https://scanner.example"');
  });

  it('names 100 origins in a minute at most; how many others were refused is said a minute later, unnamed', () => {
    const refused = refusedOriginLog({ corsOrigins: [] });
    warned.length = 0; // the boot warning about the empty list
    for (const origin of origins(100)) refused(origin);
    for (const origin of [...origins(5, 100), ...origins(5, 100)]) refused(origin);
    expect(named()).toBe(100);
    expect(warned.join('\n')).not.toContain('scan100.');
    jest.advanceTimersByTime(60_000);
    expect(warned.slice(100)).toEqual([
      'preflights from 5 other origins not in CORS_ORIGINS were refused in the last minute, not named: 100 origins already were',
    ]);
    // their minute over, origins are named again
    refused('https://scan104.example');
    expect(warned.slice(101)).toEqual([expect.stringContaining('"https://scan104.example"')]);
  });

  it('counts 1000 other origins at most: "or more"', () => {
    const refused = refusedOriginLog({ corsOrigins: [] });
    warned.length = 0;
    for (const origin of origins(1200)) refused(origin);
    jest.advanceTimersByTime(60_000);
    expect(warned.slice(100)).toEqual([
      'preflights from 1000 or more other origins not in CORS_ORIGINS were refused in the last minute, not named: 100 origins already were',
    ]);
  });
});
