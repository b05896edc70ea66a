import type { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';
import { parseMail } from '../../test/support/smtp-capture';

/** One message as the drill's mail server received it. */
export interface SinkMessage {
  messageId: string;
  subject: string;
  /**
   * What the message is about, read from its content (the subject names the kind, the body the
   * full order id) — not from its Message-ID, so a message sent again under a new Message-ID is
   * still recognised as the same email. Empty when the content names no order or kind.
   */
  orderId: string;
  kind: string;
  text: string;
  at: number;
}

/** The email kind a subject names (see src/notifications/email-templates.ts), or ''. */
function kindOfSubject(subject: string): string {
  if (/^Order \S+ confirmed$/.test(subject)) return 'order_confirmation';
  if (/^Receipt for order \S+$/.test(subject)) return 'payment_receipt';
  if (/^Order \S+ cancelled$/.test(subject)) return 'cancellation';
  if (/^Refund of .+ for order \S+ did not reach you$/.test(subject)) return 'refund_reversed';
  if (/^Refund of .+ for order \S+$/.test(subject)) return 'refund';
  return '';
}

/**
 * The drill's mail server: accepts everything and keeps each message's Message-ID and what it is
 * about. A worker killed mid-conversation resets its connection; that is logged as an event,
 * never a crash.
 */
export class MailSink {
  connectionErrors = 0;
  private constructor(
    private readonly server: SMTPServer,
    readonly url: string,
    readonly messages: SinkMessage[],
  ) {}

  static async start(): Promise<MailSink> {
    const messages: SinkMessage[] = [];
    const server = new SMTPServer({
      authOptional: true,
      disabledCommands: ['AUTH', 'STARTTLS'],
      logger: false,
      onData(stream, _session, callback) {
        const chunks: Buffer[] = [];
        stream.on('data', (c: Buffer) => chunks.push(c));
        stream.on('end', () => {
          const mail = parseMail(Buffer.concat(chunks).toString('utf8'), '', []);
          messages.push({
            messageId: mail.messageId.trim(),
            subject: mail.subject,
            orderId: /^Order ([0-9a-f-]{36})\s*$/m.exec(mail.text)?.[1] ?? '',
            kind: kindOfSubject(mail.subject),
            text: mail.text,
            at: Date.now(),
          });
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
