import { loadConfig } from '../config/config';
import { MailTransport, mailTransportProvider } from './mail-transport';

/** The SMTP transport's record of a 250 it got ("accepted" mark in Redis), as a takeover reads it. */
describe('SMTP transport: the record of an earlier delivery', () => {
  const config = loadConfig({
    NODE_ENV: 'development',
    SMTP_URL: 'smtp://127.0.0.1:2525',
    REDIS_KEY_PREFIX: 'unit',
  });
  const transport = (exists: () => Promise<number>): MailTransport =>
    (mailTransportProvider as { useFactory: (c: unknown, r: unknown) => MailTransport }).useFactory(
      config,
      {
        exists: jest.fn(exists),
      },
    );
  const message = {
    key: 'k1',
    messageId: '<k1@shop.example>',
    from: 'a@b.co',
    to: 'c@d.co',
    subject: 's',
    text: 't',
    html: 'h',
  };

  it('answers from the mark', async () => {
    expect(await transport(() => Promise.resolve(1)).alreadyDelivered!(message)).toBe(true);
    expect(await transport(() => Promise.resolve(0)).alreadyDelivered!(message)).toBe(false);
  });

  it('rejects when the mark cannot be read (never "not delivered": that sent the receipt twice)', async () => {
    await expect(
      transport(() => Promise.reject(new Error("Stream isn't writeable"))).alreadyDelivered!(
        message,
      ),
    ).rejects.toThrow();
    await expect(
      transport(() => new Promise<number>(() => undefined)).alreadyDelivered!(message),
    ).rejects.toThrow();
  });
});
