import { Writable } from 'node:stream';
import { QueryFailedError } from 'typeorm';
import { logBootFailure } from './boot-logger';
import { serializeError } from './error-serializer';

const HASH = '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA';

describe('serializeError', () => {
  it('keeps type, message, stack and code, and its causes (3 deep) by type, message and code', () => {
    const root = Object.assign(new Error('socket hang up'), { code: 'ECONNRESET', host: 'db' });
    let err: Error = root;
    for (let i = 0; i < 5; i++) err = new Error(`layer ${i}`, { cause: err });
    const failed = Object.assign(new Error('the commit failed', { cause: err }), {
      code: 57014,
      parameters: [HASH],
    });
    expect(serializeError(failed)).toEqual({
      type: 'Error',
      message: 'the commit failed',
      stack: failed.stack,
      code: 57014,
      cause: {
        type: 'Error',
        message: 'layer 4',
        cause: { type: 'Error', message: 'layer 3', cause: { type: 'Error', message: 'layer 2' } },
      },
    });
  });

  it("keeps where a system error happened and an AggregateError's errors (review: Node's connect to every address of a name logged an empty message)", () => {
    const refused = (address: string) =>
      Object.assign(new Error(`connect ECONNREFUSED ${address}:5999`), {
        code: 'ECONNREFUSED',
        errno: -111,
        syscall: 'connect',
        address,
        port: 5999,
        parameters: [HASH],
      });
    const addresses = [
      '127.0.0.1',
      '::1',
      '10.0.0.1',
      '10.0.0.2',
      '10.0.0.3',
      '10.0.0.4',
      '10.0.0.5',
    ];
    const all = Object.assign(new AggregateError(addresses.map(refused), ''), {
      code: 'ECONNREFUSED',
    });
    const logged = serializeError(all) as { errors: unknown[] } & Record<string, unknown>;
    expect(logged).toMatchObject({ type: 'AggregateError', message: '', code: 'ECONNREFUSED' });
    expect(logged.errors).toHaveLength(5);
    expect(logged.errors[1]).toEqual({
      type: 'Error',
      message: 'connect ECONNREFUSED ::1:5999',
      code: 'ECONNREFUSED',
      errno: -111,
      syscall: 'connect',
      address: '::1',
      port: 5999,
    });
    expect(JSON.stringify(logged)).not.toContain(HASH);
    // another error's `errors` (a validation's issues, quoting what they refused) are not read
    const issues = Object.assign(new Error('invalid'), {
      errors: [new Error('expected one of a|b, received "4111 1111 1111 1111"')],
    });
    expect(serializeError(issues)).not.toHaveProperty('errors');
    // an HTTP exception's status
    expect(serializeError(Object.assign(new Error('Bad Gateway'), { status: 502 }))).toMatchObject({
      status: 502,
    });
  });

  it('reads the error behind pino-http’s own serialization of it (its `raw`)', () => {
    const err = new QueryFailedError('SELECT $1', [HASH], new Error('no code'));
    const serialized = serializeError({ type: 'QueryFailedError', query: 'SELECT $1', raw: err });
    expect(serialized).toEqual({ type: 'QueryFailedError', message: 'no code', stack: err.stack });
  });

  it('logs a thrown string as it is, and an object that is no error by its type only', () => {
    expect(serializeError('boom')).toBe('boom');
    expect(serializeError({ query: 'SELECT 1', parameters: [HASH] })).toEqual({ type: 'Object' });
  });

  it('is the boot failure’s serializer too', () => {
    const lines: string[] = [];
    const stream = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(chunk.toString());
        done();
      },
    });
    logBootFailure(new QueryFailedError('INSERT …', [HASH], new Error('no code')), stream);
    expect(lines).toHaveLength(1);
    expect(lines[0]).not.toContain(HASH);
    expect(JSON.parse(lines[0])).toMatchObject({ level: 60, err: { type: 'QueryFailedError' } });
  });
});
