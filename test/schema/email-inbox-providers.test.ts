import { randomUUID } from 'node:crypto';
import type { QueryRunner } from 'typeorm';
import { EmailInboxProviders1763800060000 } from '../../migrations/1763800060000-EmailInboxProviders';
import { inboxKey } from '../../src/common/email';
import { createTestDatabase, type TestDatabase } from '../support/test-database';

/**
 * The inbox keys of rows written before inboxKey folded Proton's, iCloud's and Fastmail's aliases
 * are recomputed as inboxKey computes them now (diff review: a customer's receipt under its old
 * key left the customer no owner of the inbox its stranger's cancellations were counted under).
 */
describe('migration EmailInboxProviders', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db?.drop();
  });

  it('gives every row the key inboxKey gives its recipient now, and leaves the other providers as they were', async () => {
    const user = (
      await db.pool.query<{ id: string }>(
        `INSERT INTO users (email, name, role, password_hash, password_epoch) VALUES ('inbox@shop.test', 'n', 'customer', 'x', 'epoch-of-a-test-user-1') RETURNING id`,
      )
    ).rows[0].id;
    const recipients = [
      'first.last@proton.me',
      'first_last+shop@pm.me',
      'f-i.r_st@protonmail.com',
      'x.y@protonmail.ch',
      'asha.b+tag@me.com',
      'asha@mac.com',
      'a.sha@icloud.com',
      'anything+x@asha.fastmail.com',
      'asha@fastmail.com',
      'x@a.b.fastmail.com',
      'vic.tim+1@gmail.com',
      'first.last@outlook.com',
      'someone@example.org',
      // (stored before normalization was checked: capitals, a no-break space)
      'First.Last@Proton.ME',
      'x+y@Name.Fastmail.com',
      'fir\u00a0st.last@pm.me',
    ];
    const ids: string[] = [];
    for (const recipient of recipients) {
      const order = (
        await db.pool.query<{ id: string }>(
          `INSERT INTO orders (id, user_id, status, currency, total_amount, created_at, updated_at)
           VALUES (gen_random_uuid(), $1, 'CONFIRMED', 'INR', 100, now(), now()) RETURNING id`,
          [user],
        )
      ).rows[0].id;
      const id = randomUUID();
      ids.push(id);
      // the key it was given before: a +tag dropped, Gmail's dots
      const before = recipient.endsWith('@gmail.com')
        ? inboxKey(recipient)
        : `${recipient.split('@')[0].split('+')[0]}@${recipient.split('@')[1]}`;
      await db.pool.query(
        `INSERT INTO email_deliveries (id, order_id, kind, ref, recipient, inbox, status, attempts, message_id, created_at, updated_at)
         VALUES ($1, $2, 'cancellation', '', $3, $4, 'suppressed', 1, 'm', now(), now())`,
        [id, order, recipient, before],
      );
    }
    await new EmailInboxProviders1763800060000().up({
      query: (sql: string) => db.pool.query(sql),
    } as unknown as QueryRunner);
    const { rows } = await db.pool.query<{ recipient: string; inbox: string }>(
      `SELECT recipient, inbox FROM email_deliveries WHERE id = ANY($1::uuid[])`,
      [ids],
    );
    expect(Object.fromEntries(rows.map((r) => [r.recipient, r.inbox]))).toEqual(
      Object.fromEntries(recipients.map((r) => [r, inboxKey(r)])),
    );
  });
});
