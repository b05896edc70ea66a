import pino from 'pino';
import { Writable } from 'node:stream';
import { REDACTED_PATHS } from './redaction';

function capture() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(chunk.toString());
      done();
    },
  });
  return {
    logger: pino({ redact: { paths: REDACTED_PATHS, censor: '[REDACTED]' } }, stream),
    lines,
  };
}

describe('log redaction', () => {
  it('never writes authorization headers, passwords, tokens or card data', () => {
    const { logger, lines } = capture();
    logger.info(
      {
        req: {
          headers: {
            authorization: 'Bearer abc.def.ghi',
            cookie: 'sid=1',
            'stripe-signature': 't=1,v1=x',
          },
        },
        body: {
          password: 'hunter22',
          refreshToken: 'r-123',
          accessToken: 'a-123',
          card: { number: '4242' },
        },
      },
      'request',
    );
    const out = lines.join('');
    for (const secret of ['abc.def.ghi', 'sid=1', 'v1=x', 'hunter22', 'r-123', 'a-123', '4242']) {
      expect(out).not.toContain(secret);
    }
    expect(out).toContain('[REDACTED]');
  });
});
