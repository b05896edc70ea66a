import { Logger } from '@nestjs/common';
import type { Logger as TypeOrmLogger } from 'typeorm';
import { dataSourceOptions } from './data-source-options';

describe('the TypeORM logger', () => {
  it('logs a failed query by SQLSTATE, constraint and first words: never the statement, its parameters or the server message', () => {
    const logged: unknown[][] = [];
    for (const level of ['error', 'warn', 'log'] as const) {
      jest.spyOn(Logger.prototype, level).mockImplementation((...args: unknown[]) => {
        logged.push(args);
      });
    }
    const logger = dataSourceOptions('postgres://localhost/x').logger as TypeOrmLogger;
    const hash = '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA';
    const error = Object.assign(new Error('invalid byte sequence for encoding "UTF8": 0x00'), {
      code: '22021',
      severity: 'ERROR',
      detail: 'Key (email)=(victim@example.com) already exists.',
    });
    logger.logQuery(`SELECT * FROM users WHERE email = 'victim@example.com'`, [
      'victim@example.com',
    ]);
    logger.logQueryError(
      error,
      `INSERT INTO users (email, password_hash) VALUES ('victim@example.com', '${hash}')`,
      ['victim@example.com', hash],
    );
    jest.restoreAllMocks();
    const text = JSON.stringify(logged);
    expect(text).not.toContain('victim@example.com');
    expect(text).not.toContain(hash);
    expect(text).not.toContain('0x00');
    expect(text).toContain('22021');
    expect(text).toContain('INSERT INTO users');
  });

  it('logs a server short of resources (class 53) at error, saying what it is short of, once per SQLSTATE and window', () => {
    jest.useFakeTimers();
    const errors: unknown[][] = [];
    const warns: unknown[][] = [];
    jest.spyOn(Logger.prototype, 'error').mockImplementation((...args: unknown[]) => {
      errors.push(args);
    });
    jest.spyOn(Logger.prototype, 'warn').mockImplementation((...args: unknown[]) => {
      warns.push(args);
    });
    try {
      const logger = dataSourceOptions('postgres://localhost/x').logger as TypeOrmLogger;
      const diskFull = () =>
        Object.assign(new Error('could not extend file: No space left on device'), {
          code: '53100',
          severity: 'ERROR',
        });
      for (let i = 0; i < 50; i++) logger.logQueryError(diskFull(), 'INSERT INTO outbox (id)');
      expect(warns).toEqual([]);
      expect(errors).toEqual([
        [
          expect.objectContaining({
            sqlState: '53100',
            reason: 'the database is out of disk space',
          }),
          'query failed: the database is out of disk space',
        ],
      ]);
      jest.advanceTimersByTime(10_000);
      expect(errors[1]).toEqual([
        expect.objectContaining({ sqlState: '53100' }),
        'query failed: the database is out of disk space (49 more in 10 s)',
      ]);
      // a lock timeout stays a warning
      logger.logQueryError(Object.assign(new Error('x'), { code: '55P03' }), 'UPDATE stock');
      expect(warns).toHaveLength(1);
    } finally {
      jest.restoreAllMocks();
      jest.useRealTimers();
    }
  });
});
