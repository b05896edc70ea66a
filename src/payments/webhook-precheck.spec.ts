import type { FastifyRequest } from 'fastify';
import { RefusedWebhooks } from './webhook-precheck';

describe('RefusedWebhooks', () => {
  const from = (ip: string) => ({ headers: {}, ip }) as unknown as FastifyRequest;

  it('refuses a client past the limit however many one-off clients fill its table — nothing else counts these requests', () => {
    let now = 1_000_000;
    const refused = new RefusedWebhooks(
      { name: 'refused-webhooks', limit: 300, windowSeconds: 60 },
      () => now,
    );
    // 10,000 /64s of one IPv6 /48, one refused webhook each: the table is full
    for (let i = 0; i < 10_000; i++) refused.count(from(`2001:db8:1:${i.toString(16)}::1`));
    now += 1_500; // (past the once-a-second sweep: none of their windows has ended)
    const client = from('203.0.113.9');
    // (counted past the limit, it is refused: the 301st refusal its last)
    for (let i = 0; i < 301; i++) {
      expect(refused.over(client)).toBeNull();
      refused.count(client);
    }
    expect(refused.over(client)).toMatchObject({ code: 'RATE_LIMITED' });
  });

  it('keeps refusing a client it refuses while one-off clients come: asked about, it is seen (never the first to leave the full table)', () => {
    let now = 1_000_000;
    const refused = new RefusedWebhooks(
      { name: 'refused-webhooks', limit: 300, windowSeconds: 60 },
      () => now,
    );
    const client = from('203.0.113.9');
    for (let i = 0; i < 301; i++) refused.count(client);
    now += 1_500;
    // refused unread from here on (never counted again), still sending between 20,000 others
    for (let i = 0; i < 20_000; i++) {
      refused.count(from(`2001:db8:1:${i.toString(16)}::1`));
      if (i % 100 === 0) expect(refused.over(client)).toMatchObject({ code: 'RATE_LIMITED' });
    }
    expect(refused.over(client)).toMatchObject({ code: 'RATE_LIMITED' });
  });
});
