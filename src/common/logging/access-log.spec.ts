import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import pino from 'pino';
import pinoHttp from 'pino-http';
import { accessLogErrorObject, accessLogLevel } from './logging.module';

/** The access lines pino-http writes, with the module's level and error object, for one answer. */
async function accessLines(status: number, fail?: Error): Promise<Record<string, unknown>[]> {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      done();
    },
  });
  const log = pinoHttp({
    logger: pino(stream),
    customLogLevel: accessLogLevel,
    customErrorObject: accessLogErrorObject,
  });
  const server: Server = createServer((req, res) => {
    log(req, res);
    if (fail) (res as { err?: Error }).err = fail;
    res.statusCode = status;
    res.end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/x`);
    await new Promise((resolve) => setImmediate(resolve));
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
  return lines;
}

describe('the access line', () => {
  it('of a 5xx answer is a warning without the stack pino-http makes up for it', async () => {
    const [line] = await accessLines(503);
    expect(line.level).toBe(40);
    expect(line.err).toBeUndefined();
    expect(JSON.stringify(line)).not.toMatch(/onResFinished|failed with status code/);
    expect((line.res as { statusCode: number }).statusCode).toBe(503);
  });

  it('keeps a real error of the request', async () => {
    const [line] = await accessLines(500, new Error('the handler broke'));
    expect(line.level).toBe(40);
    expect((line.err as { message: string }).message).toBe('the handler broke');
  });

  it('of any other answer is info', async () => {
    for (const status of [200, 404, 429]) {
      const [line] = await accessLines(status);
      expect([status, line.level, line.err]).toEqual([status, 30, undefined]);
    }
  });
});
