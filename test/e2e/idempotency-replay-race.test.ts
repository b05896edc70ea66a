import type { CallHandler, ExecutionContext } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { from, lastValueFrom } from 'rxjs';
import { DomainError } from '../../src/common/errors/domain-error';
import { TransactionHost } from '../../src/database/transaction-host';
import { IDEMPOTENCY_OUTSIDE_TRANSACTION } from '../../src/idempotency/idempotency.decorator';
import { IdempotencyInterceptor } from '../../src/idempotency/idempotency.interceptor';
import { mockOf } from '../support/mocks';
import { TestApp, bootTestApp } from '../support/test-app';
import { TestDatabase, createTestDatabase } from '../support/test-database';

/**
 * Issue 11, defect 4: a replayed key collided with itself and answered 500 (duplicate key on
 * idempotency_keys_pkey). The interleaving: a twin's claim statement took its snapshot before
 * the first request committed, and its advisory lock after that commit had released the lock —
 * so it held the key but could not see the record, ran the handler again and failed on the
 * record's INSERT. Inside PostgreSQL that window lasts microseconds unless the backend is
 * descheduled (a loaded machine); this database widens it the same way, with a
 * pg_try_advisory_xact_lock that first sleeps 3 ms (found before pg_catalog's on the
 * search_path). Two API instances on one database; many keys, each replayed by several clients
 * through both instances' real interceptors and pools (no HTTP in between, for speed), half as a
 * transactional route and half as a provider route (the key held outside a transaction), until
 * they hold the stored answer — a 409 is retried at once.
 */
describe('Idempotency-Key claimed concurrently through two API instances', () => {
  let a: TestApp;
  let b: TestApp;

  let db: TestDatabase;

  beforeAll(async () => {
    db = await createTestDatabase();
    // a descheduled backend, between a statement's snapshot and its lock attempt
    await db.pool.query(`
      CREATE FUNCTION public.pg_try_advisory_xact_lock(key bigint) RETURNS boolean LANGUAGE plpgsql AS $$
      BEGIN PERFORM pg_catalog.pg_sleep(0.003); RETURN pg_catalog.pg_try_advisory_xact_lock(key); END $$`);
    await db.pool.query(`ALTER DATABASE "${db.name}" SET search_path = public, pg_catalog`);
    a = await bootTestApp({ db });
    b = await bootTestApp({ db });
  });
  afterAll(async () => {
    await b?.close();
    await a?.close();
    await db?.drop();
  });

  /** A route like the payment routes: the key held outside a transaction (`transactional: false`). */
  const inSteps = (): void => undefined;
  Reflect.defineMetadata(IDEMPOTENCY_OUTSIDE_TRANSACTION, true, inSteps);

  /**
   * One POST through an instance's interceptor (on a transactional route, or one `inSteps`); the
   * handler's effect counts once it commits.
   */
  function post(
    t: TestApp,
    key: string,
    committed: Map<string, number>,
    during: () => Promise<unknown> = async () => undefined,
    handler: () => void = () => undefined,
  ): Promise<unknown> {
    const tx = t.app.get(TransactionHost);
    const request = {
      method: 'POST',
      url: '/v1/race',
      headers: { 'idempotency-key': key },
      raw: { rawHeaders: ['Idempotency-Key', key] },
      user: { userId: 'race' },
      ip: '127.0.0.1',
      body: { quantity: 1 },
    };
    const reply = { statusCode: 201, header: () => reply, status: () => reply };
    const http = mockOf<ReturnType<ExecutionContext['switchToHttp']>>(
      { getRequest: () => request, getResponse: () => reply },
      'http',
    );
    const context = mockOf<ExecutionContext>(
      {
        getType: () => 'http',
        getHandler: () => handler,
        getClass: () => Object,
        switchToHttp: () => http,
      },
      'context',
    );
    const next: CallHandler = {
      handle: () =>
        from(
          (async () => {
            await tx.query(`SELECT 1`);
            await during();
            tx.afterCommit(() => committed.set(key, (committed.get(key) ?? 0) + 1));
            return { id: randomUUID() };
          })(),
        ),
    };
    return lastValueFrom(t.app.get(IdempotencyInterceptor).intercept(context, next));
  }

  it('answers every twin (both instances, both claim modes) with the stored response or 409 IN_USE, never an error; one effect per key', async () => {
    const keys = 60;
    const lanes = 4;
    const twins = 8;
    const committed = new Map<string, number>();
    const unexpected: string[] = [];
    let next = 0;

    await Promise.all(
      Array.from({ length: lanes }, async () => {
        while (next < keys) {
          next++;
          const key = randomUUID();
          const answers = new Set<string>();
          await Promise.all(
            Array.from({ length: twins }, async (_, i) => {
              for (let attempt = 0; attempt < 1000; attempt++) {
                try {
                  const instance = i % 2 === 0 ? a : b;
                  const handler = i % 4 < 2 ? undefined : inSteps;
                  const body = (await post(instance, key, committed, undefined, handler)) as {
                    id: string;
                  };
                  answers.add(body.id);
                  return;
                } catch (err) {
                  if (err instanceof DomainError && err.code === 'IDEMPOTENCY_KEY_IN_USE') continue;
                  unexpected.push(String((err as Error).message));
                  return;
                }
              }
              unexpected.push('still in use after 1000 attempts');
            }),
          );
          if (answers.size !== 1) unexpected.push(`key ${key}: ${answers.size} different answers`);
        }
      }),
    );

    expect(unexpected).toEqual([]);
    expect(committed.size).toBe(keys);
    expect([...committed.values()].every((n) => n === 1)).toBe(true);
    const records = await db.pool.query(
      `SELECT count(*)::int AS n FROM idempotency_keys WHERE principal = 'user:race'`,
    );
    expect(records.rows[0].n).toBe(keys);
  });

  it("a record that appears for the key before the commit (a twin let through) answers 409, not 500; the twin's answer stands", async () => {
    const key = randomUUID();
    const committed = new Map<string, number>();
    const twin = () =>
      db.pool.query(
        `INSERT INTO idempotency_keys (principal, key, method, route, fingerprint, state, response_status,
                                       response_body, created_at, expires_at)
         SELECT 'user:race', $1, method, route, fingerprint, 'completed', 201, '{"id":"twin"}', now(), now() + interval '1 day'
           FROM (VALUES ('POST', '/v1/race', encode(sha256('{"quantity":1}'), 'hex'))) AS r(method, route, fingerprint)`,
        [key],
      );
    const failed = await post(a, key, committed, twin).catch((err: unknown) => err);
    expect(failed).toBeInstanceOf(DomainError);
    expect((failed as DomainError).code).toBe('IDEMPOTENCY_KEY_IN_USE');
    expect(committed.size).toBe(0); // the effect rolled back with it
    expect(await post(b, key, committed)).toEqual({ id: 'twin' });
    expect(committed.size).toBe(0);
  });
});
