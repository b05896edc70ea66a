import { Logger, OnModuleInit, Provider } from '@nestjs/common';
import { access, mkdir, rename, unlink, writeFile } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { createTransport, type Transporter } from 'nodemailer';
import { parseConnectionUrl } from 'nodemailer/lib/shared';
import type { Logger as NodemailerLogger } from 'nodemailer/lib/shared';
import type SMTPTransport from 'nodemailer/lib/smtp-transport';
import type StreamTransport from 'nodemailer/lib/stream-transport';
import type Redis from 'ioredis';
import { withTimeout } from '../common/with-timeout';
import { APP_CONFIG, AppConfig, ConfigError, isLoopbackHost } from '../config/config';
import { REDIS } from '../redis/redis.module';

export interface OutgoingEmail {
  /** `orderId.kind[.ref]`: names the .eml file; the Message-ID is derived from it. */
  key: string;
  messageId: string;
  from: string;
  to: string;
  subject: string;
  text: string;
  html: string;
}

/**
 * The mailer side effect. Bound by configuration (SMTP_URL set → SMTP, otherwise .eml files);
 * tests can bind their own.
 */
export abstract class MailTransport {
  abstract send(message: OutgoingEmail): Promise<void>;
  /**
   * Whether this transport has its own record of having delivered `message` (optional: a
   * transport that cannot know leaves it out). Asked before sending again a message
   * whose earlier attempt may have sent it and died before recording it. Rejects when the record
   * cannot be read just now: the attempt is then tried later, never sent on a guess.
   */
  alreadyDelivered?(message: OutgoingEmail): Promise<boolean>;
  /**
   * Whether a send of `message` handed it to the mail server whole and had no answer — it may
   * have been delivered (optional, as alreadyDelivered; rejects as it does). The record outlives
   * the delivery's own `last_error`, which a later failed attempt overwrites.
   */
  handedOver?(message: OutgoingEmail): Promise<boolean>;
  /**
   * Told once the delivery of `message` is recorded as sent: a record of the transport's own that
   * only served alreadyDelivered may go. Never throws.
   */
  recorded?(message: OutgoingEmail): Promise<void>;
}

/**
 * Upper bounds on one SMTP conversation, so a send always ends (success or error) and releases
 * the delivery's lock: a twin job waiting for it (EMAIL_BUSY_RETRIES × EMAIL_BUSY_RETRY_MS, 11
 * minutes) outlives it. The server's answer to the message (after DATA's final ".") is waited for
 * the 10 minutes RFC 5321 (4.5.3.2.6) sets: a server still writing the message to its queue has
 * accepted it, and giving up sooner sent it again — a second copy per retry of a slow server.
 * nodemailer applies socketTimeout to the whole conversation; until the message is handed over
 * SMTP_IDLE_BEFORE_HANDOVER_MS ends it sooner. Query parameters of SMTP_URL override them.
 */
export const SMTP_TIMEOUTS = {
  connectionTimeout: 10_000,
  greetingTimeout: 10_000,
  socketTimeout: 10 * 60_000,
};

/**
 * Silence (nothing said by either side) that ends a conversation before the message has been
 * handed over whole (its final "." written). Nothing is delivered before that moment, so giving
 * up costs a retry, never a copy — while the 10 minutes of socketTimeout held one of the worker's
 * 4 email slots for each conversation a relay left unanswered: a 5-second stall at MAIL FROM held
 * every email of the worker for 10 minutes (email review). A healthy relay answers each command
 * within seconds — its slowest checks before the message (DNS of the sender, a recipient
 * callout: Exim gives those 30 s) included; 60 s leaves them twice that, and a stalled relay costs
 * a slot one minute.
 */
export const SMTP_IDLE_BEFORE_HANDOVER_MS = 60_000;

/** The silence limit in force (SMTP_IDLE_BEFORE_HANDOVER_MS; a test shortens it, not a setting). */
export const smtpIdle = { beforeHandoverMs: SMTP_IDLE_BEFORE_HANDOVER_MS };

/**
 * The transport's options from SMTP_URL. An `smtp://` server is upgraded with STARTTLS only when
 * it offers it, and anyone on the path can strike the offer from its EHLO reply: the credentials
 * and every receipt then travel in clear. So outside development STARTTLS is required (the send
 * fails without it) unless the server is on this host or the URL says `?requireTLS=false`.
 */
export function smtpTransportOptions(smtpUrl: string, development: boolean): SMTPTransport.Options {
  const parsed = parseConnectionUrl(smtpUrl) as SMTPTransport.Options;
  const local = isLoopbackHost(parsed.host ?? '');
  const requireTLS = parsed.requireTLS ?? (!parsed.secure && !development && !local);
  return { ...SMTP_TIMEOUTS, ...parsed, requireTLS };
}

const toMail = (m: OutgoingEmail) => ({
  from: m.from,
  to: m.to,
  subject: m.subject,
  text: m.text,
  html: m.html,
  messageId: m.messageId,
});

/**
 * How long the record of a message the mail server accepted is kept: past the longest an email
 * stays owed (the reconciler's 6 days), so every retry of it still finds the record.
 */
const ACCEPTED_MARK_MS = 7 * 24 * 3600_000;
/** A Redis slower than this leaves the mark unwritten or unread (the stricter answer: not known). */
const ACCEPTED_MARK_TIMEOUT_MS = 500;
/**
 * Attempts that handed the mail server a whole message and had no answer (the connection lost or
 * timed out after the message's final ".") after which it is taken as delivered: such a message
 * may well have been accepted, and sending it on every retry mailed one customer up to 60 copies
 * a day (mail review). One resend is allowed, so a message lost on its way is still sent again —
 * and that resend comes UNANSWERED_HANDOVER_RETRY_MS (email-job.ts) after the unanswered attempt,
 * past the incident that lost it: 2 s later, inside the same relay restart, it was lost the same
 * way and the message taken as delivered after a 10-second blip.
 */
export const UNANSWERED_HANDOVERS_LIMIT = 2;

/**
 * A send that handed the server the whole message and had no answer (counted: see
 * UNANSWERED_HANDOVERS_LIMIT). The email's job retries it later than other failures.
 */
export class UnansweredHandoverError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'UnansweredHandoverError';
  }
}

/**
 * A bunyan-style logger for one nodemailer conversation (with `transactionLog`: a line for each
 * command sent and each reply) that calls `activity` for every line, `streaming` when the server
 * answers DATA with 354 (the message begins to flow) and `handedOver` once the whole message, with
 * its final ".", has been written to the server (nodemailer's info line for the message's data
 * stream ending: `{ tnx: 'message', outByteCount }`); nothing is kept.
 */
function conversationWatcher(
  activity: () => void,
  streaming: () => void,
  handedOver: () => void,
): NodemailerLogger {
  const seen = (data: unknown, message?: unknown) => {
    const entry = data as { tnx?: unknown } | null;
    if (entry?.tnx === 'server' && typeof message === 'string' && message.startsWith('354'))
      streaming();
    else activity();
  };
  return {
    level: () => undefined,
    trace: seen,
    debug: seen,
    warn: seen,
    error: seen,
    fatal: seen,
    info: (data: unknown, message?: unknown) => {
      const entry = data as { tnx?: unknown; outByteCount?: unknown } | null;
      if (entry?.tnx === 'message' && entry.outByteCount !== undefined) handedOver();
      else seen(data, message);
    },
  };
}

/**
 * The TCP connection to the mail server, opened here (within connectionTimeout) and handed to
 * nodemailer (its `getSocket`), which speaks SMTP over it — TLS from the start for smtps:// — so
 * the transport can end a conversation that fell silent. A name is resolved by the system.
 */
function openSocket(options: SMTPTransport.Options): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({
      host: options.host ?? 'localhost',
      port: Number(options.port) || (options.secure ? 465 : 587),
      ...(options.localAddress ? { localAddress: options.localAddress } : {}),
    });
    const failed = (err: Error) => {
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    };
    const timer = setTimeout(
      () => failed(Object.assign(new Error('Connection timeout'), { code: 'ETIMEDOUT' })),
      options.connectionTimeout ?? SMTP_TIMEOUTS.connectionTimeout,
    );
    socket.once('error', failed);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeListener('error', failed); // nodemailer's own from here
      socket.setKeepAlive(true);
      resolve(socket);
    });
  });
}

/** Whether a failed send had the server's answer (an SMTP reply code), not a lost connection or a timeout. */
const answered = (err: unknown): boolean =>
  typeof (err as { responseCode?: unknown } | null)?.responseCode === 'number';

/** What the error of a send that handed the message over whole and had no answer begins with. */
export const UNANSWERED_HANDOVER = 'handed over whole, no answer';

/**
 * Sends through the mail server at SMTP_URL (smtp:// with STARTTLS — required outside development
 * but to this host: smtpTransportOptions — or smtps://).
 *
 * SMTP cannot say afterwards whether it delivered a message, so this transport keeps its own
 * record: once the server has said "250 OK", a Redis mark `<prefix>:email-accepted:<key>` (7
 * days; deleted once 'sent' is recorded). An attempt that takes over a delivery left 'sending' —
 * its worker died after the send, or the database stayed away past the two minutes the 'sent'
 * record is retried — finds the mark and records the delivery instead of mailing the customer
 * again. Redis unavailable when the mark is written: no mark, and such a takeover sends again
 * (the same Message-ID), as without the record; when it is read: the takeover is tried later (a
 * mark that cannot be read was taken for none, and the receipt went out twice — while the job
 * runs at all, BullMQ's Redis answers, so the shared client is back in a moment).
 *
 * A send that handed the server the whole message and then lost the connection, or waited out
 * its answer, may have been accepted: it is counted (`<prefix>:email-handed:<key>`, 7 days), and
 * once UNANSWERED_HANDOVERS_LIMIT attempts have ended so the message is taken as delivered (said
 * at error, with its key) — a relay behind a middlebox that drops the connection while it writes
 * the message to its queue had every retry mail the customer another copy. Such a send rejects
 * with UnansweredHandoverError, and the job's retry waits out the incident (email-job.ts), so a
 * second unanswered handover is not the same blip's. A send that failed
 * before the message was whole (refused, the connection lost during the envelope), or that the
 * server answered with a refusal after it (454 throttling, 452 storage: not taken), is not counted.
 */
class SmtpMailTransport extends MailTransport {
  private readonly options: SMTPTransport.Options;
  private readonly markPrefix: string;
  private readonly handedPrefix: string;
  private readonly logger = new Logger('Mail');

  constructor(
    smtpUrl: string,
    private readonly redis: Pick<Redis, 'set' | 'mget' | 'del' | 'multi'>,
    keyPrefix: string,
    development: boolean,
  ) {
    super();
    this.options = smtpTransportOptions(smtpUrl, development);
    this.markPrefix = `${keyPrefix}:email-accepted:`;
    this.handedPrefix = `${keyPrefix}:email-handed:`;
  }

  async send(message: OutgoingEmail): Promise<void> {
    // a transporter per message (one connection each, as nodemailer's unpooled SMTP has anyway),
    // so its log tells whether this message was handed over whole
    let handedOver = false;
    let socket: Socket | undefined;
    let silent: NodeJS.Timeout | undefined;
    let fellSilent = false;
    let streaming = false;
    let ended = false;
    // until the message is handed over, SMTP_IDLE_BEFORE_HANDOVER_MS of silence ends the
    // conversation; from then on only socketTimeout (the RFC's 10 minutes for the answer)
    let heard = 0; // (each word of the conversation; a judgment of silence checks none came since)
    const watch = () => {
      heard += 1;
      clearTimeout(silent);
      if (handedOver || streaming || ended || !socket) return;
      const due = performance.now() + smtpIdle.beforeHandoverMs;
      const asOf = heard;
      silent = setTimeout(() => {
        // fired late: this process was busy (building a large message, a stalled event loop),
        // and timers run before the replies that came meanwhile are read — not the server's
        // silence; armed again, after those replies
        if (performance.now() - due > Math.max(250, smtpIdle.beforeHandoverMs / 4)) {
          setImmediate(watch);
          return;
        }
        // judged after the replies already in the socket's buffer are read (the loop reads them
        // between its timers and its immediates): one that came during a stall shorter than the
        // margin above was taken for silence, and the attempt cut
        setImmediate(() => {
          if (heard !== asOf || handedOver || streaming || ended) return;
          fellSilent = true;
          socket?.destroy(
            new Error(
              `no word from the mail server for ${smtpIdle.beforeHandoverMs / 1000} s before the message was handed over`,
            ),
          );
        });
      }, smtpIdle.beforeHandoverMs);
    };
    const options: SMTPTransport.Options = {
      ...this.options,
      transactionLog: true,
      logger: conversationWatcher(
        watch,
        () => {
          // the message flows: its bytes say nothing in the log while a slow link carries them (8
          // MB at 50 KB/s was cut at 60 s on every attempt: mail diff review), and a stream's
          // progress is not to be seen from here — socketTimeout's 10 minutes from now on
          streaming = true;
          clearTimeout(silent);
        },
        () => {
          handedOver = true;
          clearTimeout(silent);
        },
      ),
      getSocket: (opts, done) => {
        openSocket(opts).then(
          (opened) => {
            socket = opened;
            watch();
            done(null, { connection: opened });
          },
          (err: Error) => done(err, null),
        );
      },
    };
    const transporter = createTransport(options);
    try {
      await transporter.sendMail(toMail(message));
    } catch (err) {
      // silent before the handover: the server never had the whole message — not delivered, a
      // retry like any other (not counted as an unanswered handover)
      if (fellSilent && !handedOver) {
        throw new Error(
          `no word from the mail server for ${smtpIdle.beforeHandoverMs / 1000} s before the message was handed over (not delivered)`,
          { cause: err },
        );
      }
      // (the server's answer to the message — a 4xx or 5xx after DATA, e.g. a relay's rate limit —
      // says it was not taken: retried as ever, never counted)
      if (handedOver && !answered(err)) {
        await this.countHandover(message);
        throw new UnansweredHandoverError(
          `${UNANSWERED_HANDOVER}: ${err instanceof Error ? err.message : String(err)}`,
          { cause: err },
        );
      }
      throw err;
    } finally {
      ended = true; // (nodemailer's last lines, the connection closing, arm nothing)
      clearTimeout(silent);
      transporter.close();
    }
    await withTimeout(
      this.redis.set(this.markPrefix + message.key, '1', 'PX', ACCEPTED_MARK_MS),
      ACCEPTED_MARK_TIMEOUT_MS,
    ).catch(
      () => undefined, // sent all the same; only a takeover would not know it
    );
  }

  /** One more attempt handed `message` over whole and had no answer (a Redis away: not counted). */
  private async countHandover(message: OutgoingEmail): Promise<void> {
    const key = this.handedPrefix + message.key;
    await withTimeout(
      this.redis.multi().incr(key).pexpire(key, ACCEPTED_MARK_MS).exec(),
      ACCEPTED_MARK_TIMEOUT_MS,
    ).catch(() => undefined);
  }

  override async alreadyDelivered(message: OutgoingEmail): Promise<boolean> {
    const [accepted, handed] = await withTimeout(
      this.redis.mget(this.markPrefix + message.key, this.handedPrefix + message.key),
      ACCEPTED_MARK_TIMEOUT_MS,
    );
    if (accepted !== null) return true;
    // (written by INCR: anything but a count of handovers — by hand, by another build — is none)
    const handovers = /^\d{1,9}$/.test(handed ?? '') ? Number(handed) : 0;
    if (handovers < UNANSWERED_HANDOVERS_LIMIT) return false;
    this.logger.error(
      `email ${message.key}: handed to the mail server whole ${handed} times with no answer; taken as delivered, not sent again (check the mail server's log for its Message-ID ${message.messageId})`,
    );
    return true;
  }

  /** 'sent' is recorded: the marks have served (left to expire if Redis cannot take the delete). */
  override async handedOver(message: OutgoingEmail): Promise<boolean> {
    const [handed] = await withTimeout(
      this.redis.mget(this.handedPrefix + message.key),
      ACCEPTED_MARK_TIMEOUT_MS,
    );
    return /^\d{1,9}$/.test(handed ?? '') && Number(handed) > 0;
  }

  override async recorded(message: OutgoingEmail): Promise<void> {
    await withTimeout(
      this.redis.del(this.markPrefix + message.key, this.handedPrefix + message.key),
      ACCEPTED_MARK_TIMEOUT_MS,
    ).catch(() => undefined);
  }
}

/** Development without a mail server: each message becomes `<outboxDir>/<key>.eml`. */
class FileMailTransport extends MailTransport implements OnModuleInit {
  private readonly transporter: Transporter<StreamTransport.SentMessageInfo>;

  constructor(
    private readonly dir: string,
    private readonly isDevelopment: boolean,
  ) {
    super();
    this.transporter = createTransport({ streamTransport: true, buffer: true });
  }

  /**
   * At the worker's boot: a folder the messages cannot be written to (a path through a file, a
   * read-only or another user's folder) refuses the boot naming MAIL_OUTBOX_DIR — the worker
   * booted healthy and every message failed, retried for a day. Outside development, mail
   * written as files is said once: nothing is sent to anyone.
   */
  async onModuleInit(): Promise<void> {
    // (a name of its own: replicas sharing the folder often share a pid, 1 in a container)
    const probe = join(this.dir, `.write-check-${randomUUID()}`);
    try {
      await mkdir(this.dir, { recursive: true });
      await writeFile(probe, '');
      await unlink(probe);
    } catch (err) {
      const reason = (err as NodeJS.ErrnoException).code ?? String(err);
      throw new ConfigError([
        `MAIL_OUTBOX_DIR: the folder ${this.dir} cannot be written (${reason})`,
      ]);
    }
    if (!this.isDevelopment) {
      new Logger('Mail').warn(
        `outgoing mail is written as files to ${this.dir} (MAIL_OUTBOX_DIR), not sent: set SMTP_URL to send it`,
      );
    }
  }

  async send(message: OutgoingEmail): Promise<void> {
    const info = await this.transporter.sendMail(toMail(message));
    const raw = info.message;
    if (!Buffer.isBuffer(raw)) throw new Error('stream transport did not return a buffer');
    await mkdir(this.dir, { recursive: true });
    const file = this.fileOf(message);
    // written aside and renamed, so a reader never sees half a message. One name per message
    // (its sends are one at a time: the delivery's lock): a send killed halfway leaves a partial
    // file that its rerun overwrites, and one that fails removes its own — random names left one
    // more file behind for every kill or failed write (ENOSPC: each retry ate more of the disk)
    const partial = `${file}.partial`;
    try {
      await writeFile(partial, raw);
      await rename(partial, file);
    } catch (err) {
      await unlink(partial).catch(() => undefined);
      throw err;
    }
  }

  /** The file is the record: it appears (renamed into place) only once the message is whole. */
  override async alreadyDelivered(message: OutgoingEmail): Promise<boolean> {
    return access(this.fileOf(message)).then(
      () => true,
      () => false,
    );
  }

  private fileOf(message: OutgoingEmail): string {
    return join(this.dir, `${message.key.replace(/[^A-Za-z0-9._-]/g, '_')}.eml`);
  }
}

export const mailTransportProvider: Provider = {
  provide: MailTransport,
  inject: [APP_CONFIG, REDIS],
  useFactory: (config: AppConfig, redis: Redis): MailTransport =>
    config.mail.smtpUrl
      ? new SmtpMailTransport(
          config.mail.smtpUrl,
          redis,
          config.redis.keyPrefix,
          config.isDevelopment,
        )
      : new FileMailTransport(config.mail.outboxDir, config.isDevelopment),
};
