import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * `idempotency_keys_in_use` gives up a lock wait after 1 s (its own `lock_timeout`). The question
 * holds each free pair's lock until it ends, and its asker stops waiting after 2 s
 * (IdempotencyService, KEY_READ_SENT_TIMEOUT_MS) and sends the request down the normal path: a
 * question stuck behind a lock on `idempotency_keys` (an ALTER TABLE, a VACUUM FULL) still held the
 * pair's lock then, and that first request's own claim answered 409 IDEMPOTENCY_KEY_IN_USE. Now the
 * statement fails first, its locks go with it, and the asker (an error reads as "in use") takes the
 * normal path with the key free.
 */
export class KeyQuestionLockTimeout1763800035000 implements MigrationInterface {
  name = 'KeyQuestionLockTimeout1763800035000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(
      `ALTER FUNCTION idempotency_keys_in_use(text[], text[], timestamptz) SET lock_timeout = '1s'`,
    );
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(
      `ALTER FUNCTION idempotency_keys_in_use(text[], text[], timestamptz) RESET lock_timeout`,
    );
  }
}
