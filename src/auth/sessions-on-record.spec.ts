import { Logger } from '@nestjs/common';
import { mockOf } from '../../test/support/mocks';
import type { RefreshTokenRepository } from './refresh-token.repository';
import { SessionsOnRecord } from './sessions-on-record';

describe('SessionsOnRecord', () => {
  const setup = (onRecord: (family: string) => boolean | Promise<boolean>) => {
    const tokens = mockOf<RefreshTokenRepository>(
      { sessionOpened: async (family: string) => onRecord(family) },
      'tokens',
    );
    return { sessions: new SessionsOnRecord(tokens), tokens };
  };

  it('reads a session once, then remembers it; a session not on record is read every time (never remembered)', async () => {
    const { sessions, tokens } = setup((family) => family !== 'foreign');
    expect(await sessions.opened('f1', 'u1')).toBe(true);
    expect(await sessions.opened('f1', 'u1')).toBe(true);
    expect(await sessions.opened('foreign', 'u1')).toBe(false);
    expect(await sessions.opened('foreign', 'u1')).toBe(false);
    expect(tokens.sessionOpened.mock.calls).toEqual([
      ['f1', 'u1'],
      ['foreign', 'u1'],
      ['foreign', 'u1'],
    ]);
  });

  it('a database that does not answer is no refusal, logged once in a while (not per request)', async () => {
    const warn = jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    try {
      const { sessions } = setup(() => Promise.reject(new Error('Connection terminated')));
      for (let i = 0; i < 50; i++) expect(await sessions.opened(`f${i}`, 'u1')).toBe(true);
      expect(warn).toHaveBeenCalledTimes(1);
    } finally {
      warn.mockRestore();
    }
  });

  it('holds at most 20,000, dropping the least recently used: a session in use stays remembered past them, at no read per request', async () => {
    const { sessions, tokens } = setup(() => true);
    await sessions.opened('busy', 'u');
    for (let i = 0; i < 25_000; i++) {
      await sessions.opened(`f${i}`, 'u');
      if (i % 1_000 === 0) await sessions.opened('busy', 'u'); // in use all along
    }
    // read once in all: never dropped while in use
    expect(tokens.sessionOpened.mock.calls.filter(([f]) => f === 'busy')).toHaveLength(1);
    tokens.sessionOpened.mockClear();
    await sessions.opened('busy', 'u');
    await sessions.opened('f24999', 'u');
    expect(tokens.sessionOpened).not.toHaveBeenCalled();
    await sessions.opened('f0', 'u'); // the least recently used: dropped, read again
    expect(tokens.sessionOpened.mock.calls).toEqual([['f0', 'u']]);
  });
});
