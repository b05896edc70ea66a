import type { AddressInfo, Socket } from 'node:net';
import { SMTPServer } from 'smtp-server';
import { waitFor } from './wait-for';

/** One message as the mail server received it, with the parts tests look at decoded. */
export interface CapturedMail {
  envelopeFrom: string;
  envelopeTo: string[];
  raw: string;
  /** Header names lower-cased, folded lines joined. */
  headers: Record<string, string>;
  subject: string;
  messageId: string;
  text: string;
  html: string;
}

/**
 * A real SMTP server in-process (plain SMTP, no auth) that keeps every message it accepts.
 * `stop()` closes the port (clients get ECONNREFUSED) and `start()` opens it again on the same
 * port, to play a mail server that is down for a while.
 */
export class SmtpCapture {
  readonly messages: CapturedMail[] = [];
  /** Recipients refused for good at RCPT TO (550), as a server refuses an unknown mailbox. */
  readonly refusedRecipients = new Set<string>();
  /**
   * The next this-many messages are refused at MAIL FROM with `530 5.7.0 Authentication required`,
   * as a server refuses a sender whose credentials are missing — the shop's problem, not the
   * recipient's.
   */
  refuseSenderTimes = 0;
  /**
   * The next this-many conversations lose their connection at MAIL FROM: before any message was
   * handed over (a network blip early in the conversation).
   */
  dropAtSenderTimes = 0;
  /**
   * The next this-many messages are received whole (and kept: the server queued them), then the
   * connection is lost before the answer — a middlebox that drops it while the server writes the
   * message to its queue.
   */
  dropBeforeAnswerTimes = 0;
  /**
   * The next this-many conversations are never answered at MAIL FROM (a relay stalled: the
   * connection stays open, silent, until the client ends it).
   */
  stallAtSenderTimes = 0;
  /**
   * The next this-many messages are received whole, then lost with the connection before the
   * answer, not kept — a relay whose process dies while it writes the message to its queue.
   */
  loseBeforeAnswerTimes = 0;
  /**
   * The next this-many messages are received whole and refused with `454 4.7.0 Throttling failure`
   * (a relay's sending-rate limit): answered, not kept.
   */
  refuseDataTimes = 0;
  /** Messages being received right now (their DATA started, not yet answered). */
  receiving = 0;
  /** While set, each message's DATA is answered only once it settles (holdMessages). */
  private held?: Promise<void>;
  private server?: SMTPServer;

  private constructor(private port: number) {}

  /**
   * Whether the server offers SMTPUTF8 in its EHLO reply (from the next conversation on). Either
   * way a recipient address with non-ASCII characters whose MAIL FROM did not declare SMTPUTF8
   * is refused at RCPT TO with `553 5.6.7 Must declare SMTPUTF8 to send unicode address`, as
   * Postfix refuses it — and a client sends it undeclared to a server that does not offer it.
   */
  set offerSmtpUtf8(offered: boolean) {
    this.hideSmtpUtf8 = !offered;
    if (this.server) this.server.options.hideSMTPUTF8 = !offered;
  }
  private hideSmtpUtf8 = false;

  static async start(): Promise<SmtpCapture> {
    const capture = new SmtpCapture(0);
    await capture.start();
    return capture;
  }

  get url(): string {
    return `smtp://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const server = new SMTPServer({
      authOptional: true,
      hideSMTPUTF8: this.hideSmtpUtf8,
      disabledCommands: ['AUTH', 'STARTTLS'],
      logger: false,
      onMailFrom: (_address, session, callback) => {
        if (this.dropAtSenderTimes > 0) {
          this.dropAtSenderTimes--;
          return this.dropConnection(session.id);
        }
        if (this.stallAtSenderTimes > 0) {
          this.stallAtSenderTimes--;
          return; // never answered
        }
        if (this.refuseSenderTimes <= 0) return callback();
        this.refuseSenderTimes--;
        callback(Object.assign(new Error('5.7.0 Authentication required'), { responseCode: 530 }));
      },
      onRcptTo: (address, session, callback) => {
        const from = session.envelope.mailFrom;
        const declared = from && from.args && from.args.SMTPUTF8 === true;
        if (/[^\p{ASCII}]/u.test(address.address) && !declared) {
          return callback(
            Object.assign(new Error('5.6.7 Must declare SMTPUTF8 to send unicode address'), {
              responseCode: 553,
            }),
          );
        }
        if (!this.refusedRecipients.has(address.address.toLowerCase())) return callback();
        const err = Object.assign(
          new Error(`5.1.1 <${address.address}>: Recipient address rejected: User unknown`),
          {
            responseCode: 550,
          },
        );
        callback(err);
      },
      onData: (stream, session, callback) => {
        const chunks: Buffer[] = [];
        stream.on('data', (c: Buffer) => chunks.push(c));
        this.receiving++;
        const answer = async () => {
          await this.held;
          this.receiving--;
          const from = session.envelope.mailFrom;
          if (this.refuseDataTimes > 0) {
            this.refuseDataTimes--;
            return callback(
              Object.assign(new Error('4.7.0 Throttling failure: Maximum sending rate exceeded'), {
                responseCode: 454,
              }),
            );
          }
          if (this.loseBeforeAnswerTimes > 0) {
            this.loseBeforeAnswerTimes--;
            return this.dropConnection(session.id);
          }
          this.messages.push(
            parseMail(
              Buffer.concat(chunks).toString('utf8'),
              from ? from.address : '',
              session.envelope.rcptTo.map((r) => r.address),
            ),
          );
          if (this.dropBeforeAnswerTimes > 0) {
            this.dropBeforeAnswerTimes--;
            return this.dropConnection(session.id);
          }
          callback();
        };
        stream.on('end', () => void answer());
      },
    });
    await new Promise<void>((resolve, reject) => {
      server.server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.port = (server.server.address() as AddressInfo).port;
    this.server = server;
  }

  /** Ends the conversation `sessionId` at once, with no answer (its socket destroyed). */
  private dropConnection(sessionId: string): void {
    const connections = (
      this.server as unknown as { connections: Set<{ id: string; _socket: Socket }> }
    ).connections;
    for (const c of connections) if (c.id === sessionId) c._socket.destroy();
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /**
   * Holds every message's answer (the 250 after DATA) until the returned release() — a slow mail
   * server — so a test sees how many conversations a sender keeps open at once.
   */
  holdMessages(): () => void {
    let release!: () => void;
    this.held = new Promise<void>((resolve) => (release = resolve));
    return () => {
      this.held = undefined;
      release();
    };
  }

  /** Messages about one order (its id is in every Message-ID). */
  forOrder(orderId: string): CapturedMail[] {
    return this.messages.filter((m) => m.messageId.includes(orderId));
  }

  /** Waits until `select()` returns at least `count` messages (and returns them). */
  awaitMessages(
    select: () => CapturedMail[],
    count = 1,
    timeoutMs = 15_000,
  ): Promise<CapturedMail[]> {
    return waitFor(`${count} message(s) at the SMTP server`, select, {
      until: (found) => found.length >= count,
      timeoutMs,
      intervalMs: 50,
      context: () =>
        `all subjects received: ${JSON.stringify(this.messages.map((m) => m.subject))}`,
    });
  }
}

function parseHeaders(block: string): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const line of block.replace(/\r?\n[ \t]+/g, ' ').split(/\r?\n/)) {
    const i = line.indexOf(':');
    if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
  }
  return headers;
}

function splitHead(entity: string): { headers: Record<string, string>; body: string } {
  const match = /\r?\n\r?\n/.exec(entity);
  if (!match) return { headers: parseHeaders(entity), body: '' };
  return {
    headers: parseHeaders(entity.slice(0, match.index)),
    body: entity.slice(match.index + match[0].length),
  };
}

function decode(body: string, encoding = '7bit'): string {
  switch (encoding.toLowerCase()) {
    case 'quoted-printable': {
      const soft = body.replace(/=\r?\n/g, '');
      const bytes: number[] = [];
      for (let i = 0; i < soft.length; i++) {
        if (soft[i] === '=' && /^[0-9A-F]{2}$/i.test(soft.slice(i + 1, i + 3))) {
          bytes.push(parseInt(soft.slice(i + 1, i + 3), 16));
          i += 2;
        } else {
          bytes.push(...Buffer.from(soft[i], 'utf8'));
        }
      }
      return Buffer.from(bytes).toString('utf8');
    }
    case 'base64':
      return Buffer.from(body.replace(/\s+/g, ''), 'base64').toString('utf8');
    default:
      return body;
  }
}

/** Just enough MIME for tests: a single part, or multipart/alternative with text and HTML. */
export function parseMail(raw: string, envelopeFrom: string, envelopeTo: string[]): CapturedMail {
  const { headers, body } = splitHead(raw);
  const mail: CapturedMail = {
    envelopeFrom,
    envelopeTo,
    raw,
    headers,
    subject: headers.subject ?? '',
    messageId: headers['message-id'] ?? '',
    text: '',
    html: '',
  };
  const entities: { headers: Record<string, string>; body: string }[] = [];
  const boundary = /boundary="?([^";]+)"?/i.exec(headers['content-type'] ?? '')?.[1];
  if (boundary) {
    for (const part of body.split(`--${boundary}`).slice(1)) {
      if (part.startsWith('--')) break;
      entities.push(splitHead(part.replace(/^\r?\n/, '')));
    }
  } else {
    entities.push({ headers, body });
  }
  for (const e of entities) {
    const type = (e.headers['content-type'] ?? 'text/plain').toLowerCase();
    const content = decode(e.body, e.headers['content-transfer-encoding']);
    if (type.startsWith('text/html')) mail.html = content;
    else if (type.startsWith('text/plain')) mail.text = content;
  }
  return mail;
}
