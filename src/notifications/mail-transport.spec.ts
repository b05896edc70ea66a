import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Logger } from '@nestjs/common';
import { ConfigError, loadConfig } from '../config/config';
import { Socket } from 'node:net';
import { Worker } from 'node:worker_threads';
import {
  MailTransport,
  SMTP_IDLE_BEFORE_HANDOVER_MS,
  UNANSWERED_HANDOVERS_LIMIT,
  mailTransportProvider,
  smtpIdle,
} from './mail-transport';

/** The SMTP transport's record of a 250 it got ("accepted" mark in Redis), as a takeover reads it. */
describe('SMTP transport: the record of an earlier delivery', () => {
  const config = loadConfig({
    NODE_ENV: 'development',
    SMTP_URL: 'smtp://127.0.0.1:2525',
    REDIS_KEY_PREFIX: 'unit',
  });
  const transport = (
    marks: () => Promise<(string | null)[]>,
    errors: unknown[] = [],
  ): MailTransport => {
    jest.spyOn(Logger.prototype, 'error').mockImplementation((m) => void errors.push(m));
    return (
      mailTransportProvider as { useFactory: (c: unknown, r: unknown) => MailTransport }
    ).useFactory(config, { mget: jest.fn(marks) });
  };
  afterEach(() => jest.restoreAllMocks());
  const message = {
    key: 'k1',
    messageId: '<k1@shop.example>',
    from: 'a@b.co',
    to: 'c@d.co',
    subject: 's',
    text: 't',
    html: 'h',
  };

  it('answers from the marks: accepted, or handed over whole and unanswered UNANSWERED_HANDOVERS_LIMIT times (said at error)', async () => {
    const marks = (accepted: string | null, handed: string | null) => () =>
      Promise.resolve([accepted, handed]);
    expect(await transport(marks('1', null)).alreadyDelivered!(message)).toBe(true);
    expect(await transport(marks(null, null)).alreadyDelivered!(message)).toBe(false);
    const errors: unknown[] = [];
    const limit = UNANSWERED_HANDOVERS_LIMIT;
    expect(await transport(marks(null, String(limit - 1)), errors).alreadyDelivered!(message)).toBe(
      false,
    );
    expect(errors).toEqual([]);
    expect(await transport(marks(null, String(limit)), errors).alreadyDelivered!(message)).toBe(
      true,
    );
    expect(errors).toEqual([expect.stringContaining(`email k1: handed to the mail server whole`)]);
    // a count that is no number (written by hand, or by another build) counts nothing: the email
    // is sent, never taken as delivered unsent
    for (const odd of ['lots', '', ' ', '1e999', '-'])
      expect([odd, await transport(marks(null, odd)).alreadyDelivered!(message)]).toEqual([
        odd,
        false,
      ]);
  });

  it('rejects when the mark cannot be read (never "not delivered": that sent the receipt twice)', async () => {
    await expect(
      transport(() => Promise.reject(new Error("Stream isn't writeable"))).alreadyDelivered!(
        message,
      ),
    ).rejects.toThrow();
    await expect(
      transport(() => new Promise<(string | null)[]>(() => undefined)).alreadyDelivered!(message),
    ).rejects.toThrow();
  });
});

/** Development's file transport: a send killed or failing halfway leaves nothing behind. */
describe('file transport: no partial files left behind', () => {
  const message = {
    key: 'order.1.receipt',
    messageId: '<k2@shop.example>',
    from: 'a@b.co',
    to: 'c@d.co',
    subject: 's',
    text: 't',
    html: 'h',
  };
  let dir: string;
  let transport: MailTransport;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mail-transport-'));
    const config = loadConfig({
      NODE_ENV: 'development',
      MAIL_OUTBOX_DIR: dir,
      REDIS_KEY_PREFIX: 'unit',
    });
    transport = (
      mailTransportProvider as { useFactory: (c: unknown, r: unknown) => MailTransport }
    ).useFactory(config, {});
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it("a rerun overwrites a killed send's partial file; a failed send removes its own", async () => {
    await writeFile(join(dir, 'order.1.receipt.eml.partial'), 'half a mess'); // a send killed halfway
    await transport.send(message);
    expect(await readdir(dir)).toEqual(['order.1.receipt.eml']);
    expect(await transport.alreadyDelivered!(message)).toBe(true);

    const other = { ...message, key: 'order.2.receipt' };
    await mkdir(join(dir, 'order.2.receipt.eml')); // the rename cannot replace a directory
    for (let attempt = 0; attempt < 3; attempt++)
      await expect(transport.send(other)).rejects.toThrow();
    expect((await readdir(dir)).sort()).toEqual(['order.1.receipt.eml', 'order.2.receipt.eml']);
  });
});

/** The file transport's folder is checked at the worker's boot, not at its first message. */
describe('file transport: a folder that cannot be written refuses the boot', () => {
  const fileTransport = (outboxDir: string, nodeEnv = 'development') =>
    (
      mailTransportProvider as {
        useFactory: (c: unknown, r: unknown) => MailTransport & { onModuleInit(): Promise<void> };
      }
    ).useFactory(
      {
        ...loadConfig({
          NODE_ENV: 'development',
          MAIL_OUTBOX_DIR: outboxDir,
          REDIS_KEY_PREFIX: 'unit',
        }),
        isDevelopment: nodeEnv === 'development',
      },
      {},
    );
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mail-outbox-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('creates a missing folder and leaves no probe behind; a path through a file is a ConfigError naming MAIL_OUTBOX_DIR', async () => {
    await fileTransport(join(dir, 'a', 'b')).onModuleInit();
    expect(await readdir(join(dir, 'a', 'b'))).toEqual([]);
    await writeFile(join(dir, 'plain'), 'x');
    const refused = fileTransport(join(dir, 'plain', 'mail')).onModuleInit();
    await expect(refused).rejects.toBeInstanceOf(ConfigError);
    await expect(refused).rejects.toThrow(
      /MAIL_OUTBOX_DIR: the folder .* cannot be written \(ENOTDIR\)/,
    );
  });

  it('says outside development that mail is written as files, not sent', async () => {
    const warn = jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    try {
      await fileTransport(dir).onModuleInit();
      expect(warn).not.toHaveBeenCalled();
      await fileTransport(dir, 'production').onModuleInit();
      expect(warn).toHaveBeenCalledWith(expect.stringMatching(/written as files .* not sent/));
    } finally {
      warn.mockRestore();
    }
  });
});

/** Sends a message with `text` to the SMTP server on `port`, under a silence limit of `limitMs`. */
async function sendUnderSilenceLimit(
  port: number,
  key: string,
  text: string,
  limitMs = 1_000,
): Promise<void> {
  const config = loadConfig({
    NODE_ENV: 'development',
    SMTP_URL: `smtp://127.0.0.1:${port}`,
    REDIS_KEY_PREFIX: 'unit',
  });
  const transport = (
    mailTransportProvider as { useFactory: (c: unknown, r: unknown) => MailTransport }
  ).useFactory(config, { set: async () => 'OK' });
  smtpIdle.beforeHandoverMs = limitMs;
  try {
    await transport.send({
      key,
      messageId: `<${key}@shop.example>`,
      from: 'a@b.co',
      to: 'c@d.co',
      subject: 's',
      text,
      html: 'h',
    });
  } finally {
    smtpIdle.beforeHandoverMs = SMTP_IDLE_BEFORE_HANDOVER_MS;
  }
}

/**
 * A mail server (and whatever stands before it) run from `source` in a thread of its own, as a
 * real one is elsewhere: its replies never wait on this thread's stalls. Its first message is its
 * port; every later one goes to `onMessage`.
 */
async function serverThread(
  source: string,
  onMessage: (message: unknown) => void,
): Promise<{ thread: Worker; port: number }> {
  const thread = new Worker(source, { eval: true });
  const port = await new Promise<number>((resolve, reject) => {
    thread.once('message', resolve);
    thread.once('error', reject);
  });
  thread.on('message', onMessage);
  return { thread, port };
}

describe('SMTP transport: the silence limit before the handover', () => {
  // the mail server and the slow link in a thread of their own, as a real relay is another
  // machine: in this one, a stall of this process delayed the server's replies too, and the
  // client's timer judged the server silent (a full run on a loaded machine, under a 2 s limit)
  const slowRelay = String.raw`
    const { connect, createServer } = require('node:net');
    const { parentPort } = require('node:worker_threads');
    const { SMTPServer } = require('smtp-server');
    const server = new SMTPServer({
      authOptional: true,
      disabledCommands: ['AUTH', 'STARTTLS'],
      // (no DNS before the greeting: a resolver slow to answer is silence before the handover)
      disableReverseLookup: true,
      logger: false,
      size: 100 * 1024 * 1024,
      onData(stream, _session, done) {
        let bytes = 0;
        stream.on('data', (chunk) => (bytes += chunk.length));
        stream.on('end', () => {
          parentPort.postMessage(bytes);
          done();
        });
      },
    });
    server.listen(0, '127.0.0.1', () => {
      // a slow link: the client's bytes reach the server at RATE bytes a second, a slice every 50 ms
      const RATE = 2 * 1024 * 1024;
      const relay = createServer((client) => {
        const upstream = connect(server.server.address().port, '127.0.0.1');
        upstream.pipe(client);
        let budget = RATE / 20;
        client.on('data', (chunk) => {
          upstream.write(chunk);
          budget -= chunk.length;
          if (budget <= 0) client.pause();
        });
        const tick = setInterval(() => {
          budget = Math.min(budget + RATE / 20, RATE / 20);
          if (budget > 0) client.resume();
        }, 50);
        const end = () => {
          clearInterval(tick);
          upstream.destroy();
        };
        client.on('close', end);
        client.on('error', end);
        upstream.on('error', () => client.destroy());
      });
      relay.listen(0, '127.0.0.1', () => parentPort.postMessage(relay.address().port));
    });
  `;
  let thread: Worker;
  let port: number;
  const received: number[] = [];
  beforeAll(async () => {
    ({ thread, port } = await serverThread(slowRelay, (m) => received.push(Number(m))));
  });
  afterAll(() => thread.terminate());

  it('an 8 MB message streaming for seconds at 2 MB/s is delivered under a 2 s limit: it was cut at every attempt', async () => {
    const text = 'x'.repeat(8 * 1024 * 1024);
    await sendUnderSilenceLimit(port, 'big', text, 2_000);
    expect(received).toHaveLength(1);
    expect(received[0]).toBeGreaterThan(text.length);
  }, 90_000); // (~11 s on an idle machine; over 30 s while the whole suite runs on a slow day)
});

describe('SMTP transport: silence judged after the replies already come', () => {
  // the mail server in a thread of its own, so it answers while this one is stalled: a reply in
  // the socket's buffer when the silence timer fires (a few ms late) is read before it judges
  const responder = String.raw`
    const { createServer } = require('node:net');
    const { parentPort } = require('node:worker_threads');
    const server = createServer((socket) => {
      let data = false;
      let buffered = '';
      socket.write('220 stalled.test ESMTP\r\n');
      socket.on('data', (chunk) => {
        buffered += chunk.toString('latin1');
        for (;;) {
          if (data) {
            const end = buffered.indexOf('\r\n.\r\n');
            if (end < 0) return;
            buffered = buffered.slice(end + 5);
            data = false;
            parentPort.postMessage('delivered');
            socket.write('250 2.0.0 queued\r\n');
            continue;
          }
          const eol = buffered.indexOf('\r\n');
          if (eol < 0) return;
          const line = buffered.slice(0, eol).toUpperCase();
          buffered = buffered.slice(eol + 2);
          if (line.startsWith('EHLO')) socket.write('250-stalled.test\r\n250 8BITMIME\r\n');
          else if (line.startsWith('DATA')) { data = true; socket.write('354 go ahead\r\n'); }
          else if (line.startsWith('QUIT')) socket.end('221 bye\r\n');
          else socket.write('250 ok\r\n');
        }
      });
      socket.on('error', () => undefined);
    });
    server.listen(0, '127.0.0.1', () => parentPort.postMessage(server.address().port));
  `;
  let thread: Worker;
  let port: number;
  const delivered: string[] = [];
  beforeAll(async () => {
    ({ thread, port } = await serverThread(responder, (m) => delivered.push(String(m))));
  });
  afterAll(() => thread.terminate());

  it('a reply that came while this process was stalled past the limit is not silence (it was, when the timer fired under 250 ms late)', async () => {
    const write = Socket.prototype.write;
    let stalls = 0;
    // the client's MAIL FROM goes out, then this process is busy for a little over the limit:
    // the server's 250 waits in the socket's buffer while the silence timer comes due
    const stalled = jest.spyOn(Socket.prototype, 'write').mockImplementation(function (
      this: Socket,
      ...args: Parameters<Socket['write']>
    ) {
      const written = write.apply(this, args);
      if (String(args[0]).startsWith('MAIL FROM')) {
        stalls += 1;
        const until = performance.now() + 1_050;
        while (performance.now() < until); // (a stall, not a wait: the other thread answers)
      }
      return written;
    });
    try {
      await sendUnderSilenceLimit(port, 'stalled', 't');
    } finally {
      stalled.mockRestore();
    }
    expect(stalls).toBe(1);
    expect(delivered).toEqual(['delivered']);
  }, 30_000);
});
