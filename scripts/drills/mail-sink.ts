import type { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';

/**
 * The drill's mail server: accepts everything and keeps each message's Message-ID. A worker
 * killed mid-conversation resets its connection; that is logged as an event, never a crash.
 */
export class MailSink {
  connectionErrors = 0;
  private constructor(
    private readonly server: SMTPServer,
    readonly url: string,
    readonly messages: { messageId: string; at: number }[],
  ) {}

  static async start(): Promise<MailSink> {
    const messages: MailSink['messages'] = [];
    const server = new SMTPServer({
      authOptional: true,
      disabledCommands: ['AUTH', 'STARTTLS'],
      logger: false,
      onData(stream, _session, callback) {
        const chunks: Buffer[] = [];
        stream.on('data', (c: Buffer) => chunks.push(c));
        stream.on('end', () => {
          const raw = Buffer.concat(chunks).toString('utf8');
          const head = raw.split(/\r?\n\r?\n/)[0].replace(/\r?\n[ \t]+/g, ' ');
          const id = /^message-id:\s*(.+)$/im.exec(head)?.[1]?.trim() ?? '';
          messages.push({ messageId: id, at: Date.now() });
          callback();
        });
      },
    });
    await new Promise<void>((resolve, reject) => {
      server.server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    const { port } = server.server.address() as AddressInfo;
    const sink = new MailSink(server, `smtp://127.0.0.1:${port}`, messages);
    server.on('error', () => (sink.connectionErrors += 1));
    return sink;
  }

  stop(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}
