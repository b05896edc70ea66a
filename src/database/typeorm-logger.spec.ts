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
});
