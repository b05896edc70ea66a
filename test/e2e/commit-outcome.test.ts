import { DomainError } from '../../src/common/errors/domain-error';
import { PendingRevocations } from '../../src/auth/pending-revocations';
import { RefreshTokenRepository } from '../../src/auth/refresh-token.repository';
import { RevokedSessions } from '../../src/auth/revoked-sessions';
import { REDIS } from '../../src/redis/redis.module';
import type Redis from 'ioredis';
import { TransactionHost } from '../../src/database/transaction-host';
import { TEST_PASSWORD, createAdmin, login, registerCustomer } from '../support/auth';
import { assertStockInvariants, insertProduct, newKey, stockOf } from '../support/fixtures';
import type { HttpResponse } from '../support/http';
import { PgCommitProxy, startPgCommitProxy } from '../support/pg-commit-proxy';
import { TestApp, bootTestApp } from '../support/test-app';
import { createTestDatabase } from '../support/test-database';
import { waitFor } from '../support/wait-for';

// A COMMIT whose answer is lost (the connection dies after the server committed) used to answer
// 503 for work that was done: a refresh retried then found its token spent and revoked the
// session as a reuse, and effects after the commit (cache versions, sold-out marks) were skipped.
// TransactionHost now asks the database what became of the transaction (pg_xact_status).
describe('a COMMIT whose answer is lost', () => {
  let t: TestApp;
  let proxy: PgCommitProxy;
  let tx: TransactionHost;

  beforeAll(async () => {
    const db = await createTestDatabase();
    proxy = await startPgCommitProxy(db.url);
    t = await bootTestApp({ db, env: { DATABASE_URL: proxy.through(db.url) } });
    tx = t.app.get(TransactionHost);
    await t.db.pool.query(`CREATE TABLE commit_probe (v int)`);
  });
  afterAll(async () => {
    await t?.close();
    await t?.db.drop();
    await proxy?.close();
  });

  const probeRows = async () =>
    (await t.db.pool.query<{ v: number }>(`SELECT v FROM commit_probe ORDER BY v`)).rows.map(
      (r) => r.v,
    );

  beforeEach(async () => {
    await t.db.pool.query(`DELETE FROM commit_probe`);
  });

  it('a new pool connection the server ends the moment it is ready (its ReadyForQuery and a FATAL in one packet: a failover, pg_terminate_backend) does not end the process: its statement fails 503, the rest go on', async () => {
    const cutsBefore = proxy.cuts;
    const terminated = proxy.terminateNextConnectionWhenReady();
    // more statements at once than the pool keeps idle: new connections are opened for some
    const outcomes = await Promise.allSettled(
      Array.from({ length: t.config.database.poolSize }, () =>
        tx.run(() => tx.query('SELECT pg_sleep(0.05)')),
      ),
    );
    // (a new connection was opened, and ended: a pool that had them all idle would not show it)
    await Promise.race([
      terminated,
      new Promise((_, reject) =>
        setTimeout(() => reject(new Error('no new pool connection was opened')), 5_000),
      ),
    ]);
    expect(proxy.cuts - cutsBefore).toBe(1);
    for (const outcome of outcomes) {
      if (outcome.status === 'rejected') {
        expect(outcome.reason).toBeInstanceOf(DomainError);
        expect((outcome.reason as DomainError).code).toBe('SERVICE_UNAVAILABLE');
      }
    }
    expect(outcomes.filter((o) => o.status === 'fulfilled').length).toBeGreaterThan(0);
    expect((await t.http.get('/health/ready')).status).toBe(200);
    expect((await tx.run(() => tx.query<{ one: number }>('SELECT 1 AS one')))[0].one).toBe(1);
  });

  it('is found committed: run() returns its value and runs what waits for the commit', async () => {
    const cuts = proxy.cuts;
    const lost = proxy.loseNextCommitAnswer();
    const after: string[] = [];
    const value = await tx.run(async () => {
      await tx.query(`INSERT INTO commit_probe VALUES (1)`);
      tx.afterCommit(() => after.push('afterCommit'));
      await tx.whenCommitted(async () => {
        after.push('whenCommitted');
      });
      return 'done';
    });
    await lost;
    expect(proxy.cuts).toBe(cuts + 1);
    expect(value).toBe('done');
    expect(after).toEqual(['afterCommit', 'whenCommitted']);
    expect(await probeRows()).toEqual([1]);
  });

  it('is found committed when statements travel with the COMMIT (their rows are lost, not the commit)', async () => {
    const lost = proxy.loseNextCommitAnswer();
    const seen: unknown[][] = [];
    const value = await tx.runOpeningWith('SELECT $1::int AS v', [5], async (rows) => {
      tx.sendWithCommit('INSERT INTO commit_probe VALUES ($1::int)', [2]);
      tx.sendWithCommit('INSERT INTO commit_probe VALUES ($1::int) RETURNING v', [3], {
        last: true,
        onRows: (r) => seen.push(r),
      });
      return rows;
    });
    await lost;
    expect(value).toEqual([{ v: 5 }]);
    expect(seen).toEqual([]);
    expect(await probeRows()).toEqual([2, 3]);
  });

  it('is found rolled back when the COMMIT never reached the server: run again, once, on another connection (written once); when that one is cut too, 503 and nothing written', async () => {
    const cut = proxy.cutBeforeNextCommit();
    const after: string[] = [];
    let runs = 0;
    const work = async () => {
      runs++;
      await tx.query(`INSERT INTO commit_probe VALUES (4)`);
      tx.afterCommit(() => after.push('afterCommit'));
    };
    // a 10 ms blink as the COMMIT goes out: the server rolled it back, so it is run again
    await tx.run(work);
    await cut;
    expect(runs).toBe(2);
    expect(after).toEqual(['afterCommit']);
    expect(await probeRows()).toEqual([4]);

    // statements travelling with the COMMIT too
    await t.db.pool.query(`DELETE FROM commit_probe`);
    const again = proxy.cutBeforeNextCommit();
    await tx.run(async () => {
      tx.sendWithCommit('INSERT INTO commit_probe VALUES ($1::int)', [6]);
    });
    await again;
    expect(await probeRows()).toEqual([6]);

    // every COMMIT cut: once run again, then 503, nothing written
    await t.db.pool.query(`DELETE FROM commit_probe`);
    const release = proxy.cutStatements(/COMMIT/);
    runs = 0;
    after.length = 0;
    const outcome = await tx.run(work).then(
      () => 'resolved',
      (err: unknown) => err,
    );
    release();
    expect(runs).toBe(2);
    expect(outcome).toBeInstanceOf(DomainError);
    expect((outcome as DomainError).code).toBe('SERVICE_UNAVAILABLE');
    expect(after).toEqual([]);
    expect(await probeRows()).toEqual([]);
    // the pool recovers: the next transaction goes through
    await tx.run(() => tx.query(`INSERT INTO commit_probe VALUES (5)`));
    expect(await probeRows()).toEqual([5]);
  });

  it('a category create whose commit answer was lost answers 201 with the category (a retry would be told SLUG_TAKEN)', async () => {
    const admin = await createAdmin(t);
    const slug = `lost-${Date.now()}`;
    const cutsBefore = proxy.cuts;
    const lost = proxy.loseNextCommitAnswer();
    const res = await t.http.post(
      '/v1/admin/categories',
      { name: 'Lost answer', slug },
      { token: admin.accessToken },
    );
    expect(proxy.cuts).toBe(cutsBefore + 1); // the create's own COMMIT was the one cut
    await lost;
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({ slug, name: 'Lost answer' });
    const stored = await t.db.pool.query(`SELECT id FROM categories WHERE slug = $1`, [slug]);
    expect(stored.rows).toEqual([{ id: res.body.id }]);
  });

  it('a refresh whose commit answer was lost answers its new pair; the session lives on', async () => {
    const session = await registerCustomer(t.http);
    const lost = proxy.loseNextCommitAnswer();
    const res = await t.http.post('/v1/auth/refresh', { refreshToken: session.refreshToken });
    await lost;
    expect(res.status).toBe(200);
    // the new pair is the one that was committed: it works, and so does the next rotation
    expect((await t.http.get('/v1/me', { token: res.body.accessToken })).status).toBe(200);
    const next = await t.http.post('/v1/auth/refresh', { refreshToken: res.body.refreshToken });
    expect(next.status).toBe(200);
    // the old token is spent, as API.md says; nothing was revoked as a reuse before
    expect(
      (
        await t.db.pool.query(
          `SELECT count(*)::int AS n FROM refresh_token_families WHERE user_id = $1 AND revoked_at IS NOT NULL`,
          [session.user.id],
        )
      ).rows[0].n,
    ).toBe(0);
    await login(t.http, session.email, session.password);
  });

  it('a refresh whose commit answer was lost while the database could not be asked for a moment answers its new pair', async () => {
    const session = await registerCustomer(t.http);
    const cutsBefore = proxy.cuts;
    const lost = proxy.loseNextCommitAnswer();
    // the database is unreachable for the outcome's question (a restart, a crash recovery)
    const reachable = proxy.cutStatements(/pg_xact_status/);
    const pending = t.http.post('/v1/auth/refresh', { refreshToken: session.refreshToken });
    try {
      // the COMMIT's answer and two questions cut
      await waitFor('the outcome asked twice', () => proxy.cuts >= cutsBefore + 3);
    } finally {
      reachable();
    }
    const res = await pending;
    await lost;
    expect(res.status).toBe(200);
    expect(
      (await t.http.post('/v1/auth/refresh', { refreshToken: res.body.refreshToken })).status,
    ).toBe(200);
    const revoked = await t.db.pool.query(
      `SELECT count(*)::int AS n FROM refresh_token_families WHERE user_id = $1 AND revoked_at IS NOT NULL`,
      [session.user.id],
    );
    expect(revoked.rows[0].n).toBe(0);
  });

  it('a reuse whose revoking statement never reached the server: the session is refused at once, and the revocation commits later, even after the process that saw it stopped', async () => {
    const session = await registerCustomer(t.http);
    const rotated = await t.http.post('/v1/auth/refresh', { refreshToken: session.refreshToken });
    expect(rotated.status).toBe(200);
    const pending = t.app.get(PendingRevocations);
    const redis = t.app.get<Redis>(REDIS);
    // the database unreachable for the revocation, however often it is tried
    const reopen = proxy.cutStatements(/^UPDATE "refresh_token_families" SET "revoked_at"/);
    let reopened = false;
    try {
      const reuse = await t.http.post('/v1/auth/refresh', { refreshToken: session.refreshToken });
      expect([reuse.status, reuse.body.code]).toEqual([401, 'REFRESH_TOKEN_REUSED']);
      // not committed, yet whoever holds the newest pair is out: its access token and its refresh token
      expect((await t.http.get('/v1/me', { token: rotated.body.accessToken })).status).toBe(401);
      const newest = await t.http.post('/v1/auth/refresh', {
        refreshToken: rotated.body.refreshToken,
      });
      expect(newest.status).toBe(401);
      const family = (
        await t.db.pool.query(
          `SELECT id, revoked_at FROM refresh_token_families WHERE user_id = $1`,
          [session.user.id],
        )
      ).rows[0];
      expect(family.revoked_at).toBeNull();
      // recorded as pending, shared; the process that saw it stops (its retry gives up)
      const recordKey = `${t.config.redis.keyPrefix}:pending-revocations`;
      expect(await redis.hexists(recordKey, family.id)).toBe(1);
      await pending.onApplicationShutdown();
      reopen();
      reopened = true;
      expect(
        (
          await t.db.pool.query(`SELECT revoked_at FROM refresh_token_families WHERE id = $1`, [
            family.id,
          ])
        ).rows[0].revoked_at,
      ).toBeNull();
      // another process's sweep commits it
      const other = new PendingRevocations(
        t.app.get(TransactionHost),
        t.app.get(RefreshTokenRepository),
        t.app.get(RevokedSessions),
        redis,
        t.config,
      );
      expect(await other.sweep()).toBeGreaterThanOrEqual(1);
      const { rows } = await t.db.pool.query(
        `SELECT revoked_reason AS reason FROM refresh_token_families WHERE id = $1`,
        [family.id],
      );
      expect(rows).toEqual([{ reason: 'reuse-detected' }]);
      expect(await redis.hexists(recordKey, family.id)).toBe(0);
      expect((await t.http.get('/v1/me', { token: rotated.body.accessToken })).status).toBe(401);
    } finally {
      if (!reopened) reopen();
    }
  });

  it("a password change whose transaction never commits (the database unreachable at its last statement, every time): 503, and the sessions it marked revoked are revoked all the same — a thief's session does not come back when the marks lapse", async () => {
    const owner = await registerCustomer(t.http);
    const thief = await login(t.http, owner.email, TEST_PASSWORD);
    const passwordHash = async () =>
      (await t.db.pool.query(`SELECT password_hash FROM users WHERE id = $1`, [owner.user.id]))
        .rows[0].password_hash as string;
    const before = await passwordHash();
    // its last statement (the clients that signed in with the old password forgotten) never
    // reaches the server, however often the transaction is run
    const reopen = proxy.cutStatements(/^UPDATE "refresh_token_families" SET "client_key"/);
    let change: HttpResponse;
    try {
      change = await t.http.post(
        '/v1/me/password',
        { currentPassword: TEST_PASSWORD, newPassword: 'another-horse-battery' },
        { token: owner.accessToken },
      );
    } finally {
      reopen();
    }
    expect([change.status, change.body.code]).toEqual([503, 'SERVICE_UNAVAILABLE']);
    await t.app.get(PendingRevocations).settled();
    // the password is what it was; every session it had marked is revoked in the database
    expect(await passwordHash()).toBe(before);
    const { rows } = await t.db.pool.query(
      `SELECT revoked_reason AS reason FROM refresh_token_families WHERE user_id = $1`,
      [owner.user.id],
    );
    expect(rows).toEqual([{ reason: 'password-changed' }, { reason: 'password-changed' }]);
    // the marks lapse (an access-token lifetime): the thief's refresh token is still refused —
    // it was refused only while marked, then worked again
    const redis = t.app.get<Redis>(REDIS);
    const marks = await redis.keys(`${t.config.redis.keyPrefix}:revoked-session:*`);
    if (marks.length > 0) await redis.del(...marks);
    const lapsed = await t.http.post('/v1/auth/refresh', { refreshToken: thief.refreshToken });
    expect(lapsed.status).toBe(401);
    // the owner signs in with the password it still is, and changes it
    const again = await login(t.http, owner.email, TEST_PASSWORD);
    const changed = await t.http.post(
      '/v1/me/password',
      { currentPassword: TEST_PASSWORD, newPassword: 'another-horse-battery' },
      { token: again.accessToken },
    );
    expect(changed.status).toBe(204);
  });

  it('a reuse whose revocation never reached the server answers 401 and is revoked all the same', async () => {
    const session = await registerCustomer(t.http);
    const rotated = await t.http.post('/v1/auth/refresh', { refreshToken: session.refreshToken });
    expect(rotated.status).toBe(200);
    const cut = proxy.cutBeforeNextCommit();
    const reuse = await t.http.post('/v1/auth/refresh', { refreshToken: session.refreshToken });
    await cut;
    expect([reuse.status, reuse.body.code]).toEqual([401, 'REFRESH_TOKEN_REUSED']);
    await t.app.get(PendingRevocations).settled();
    const { rows } = await t.db.pool.query(
      `SELECT revoked_reason AS reason FROM refresh_token_families WHERE user_id = $1`,
      [session.user.id],
    );
    expect(rows).toEqual([{ reason: 'reuse-detected' }]);
    // whoever holds the newest token of the family is out too
    const newest = await t.http.post('/v1/auth/refresh', {
      refreshToken: rotated.body.refreshToken,
    });
    expect(newest.status).toBe(401);
    expect((await t.http.get('/v1/me', { token: rotated.body.accessToken })).status).toBe(401);
  });

  it('a logout whose revocation never reached the server answers 204 and is revoked all the same', async () => {
    const session = await registerCustomer(t.http);
    const cut = proxy.cutBeforeNextCommit();
    const res = await t.http.post('/v1/auth/logout', { refreshToken: session.refreshToken });
    await cut;
    expect(res.status).toBe(204);
    // refused at once, and committed by the retry: not a mark that expires with the access token
    expect((await t.http.get('/v1/me', { token: session.accessToken })).status).toBe(401);
    await t.app.get(PendingRevocations).settled();
    const { rows } = await t.db.pool.query(
      `SELECT revoked_reason AS reason FROM refresh_token_families WHERE user_id = $1`,
      [session.user.id],
    );
    expect(rows).toEqual([{ reason: 'logout' }]);
    const refresh = await t.http.post('/v1/auth/refresh', { refreshToken: session.refreshToken });
    expect(refresh.status).toBe(401);
  });

  it("a logout whose process dies before its COMMIT is committed by another process's sweep", async () => {
    const session = await registerCustomer(t.http);
    const pending = t.app.get(PendingRevocations);
    // the process dies as its COMMIT goes out: it never sees the failure, so never retries it
    // (every COMMIT cut: a transaction the server rolled back is run again once, on another connection)
    const died = jest.spyOn(pending, 'revokeFamily').mockImplementation(() => undefined);
    const release = proxy.cutStatements(/COMMIT/);
    try {
      await t.http.post('/v1/auth/logout', { refreshToken: session.refreshToken });
    } finally {
      release();
      died.mockRestore();
    }
    const family = (
      await t.db.pool.query(
        `SELECT id, revoked_at FROM refresh_token_families WHERE user_id = $1`,
        [session.user.id],
      )
    ).rows[0];
    expect(family.revoked_at).toBeNull();
    const other = new PendingRevocations(
      t.app.get(TransactionHost),
      t.app.get(RefreshTokenRepository),
      t.app.get(RevokedSessions),
      t.app.get<Redis>(REDIS),
      t.config,
    );
    const sweptAt = new Date();
    await other.sweep();
    const { rows } = await t.db.pool.query(
      `SELECT revoked_reason AS reason, revoked_at FROM refresh_token_families WHERE id = $1`,
      [family.id],
    );
    expect(rows).toEqual([{ reason: 'logout', revoked_at: expect.any(Date) }]);
    // stamped when it committed, not when it was decided: it looks new to the processes reading
    // revocations from the record while Redis is down
    expect(rows[0].revoked_at.getTime()).toBeGreaterThanOrEqual(sweptAt.getTime());
    expect(
      (await t.http.post('/v1/auth/refresh', { refreshToken: session.refreshToken })).status,
    ).toBe(401);
  });

  it('a logout that commits leaves no pending record behind', async () => {
    const session = await registerCustomer(t.http);
    expect(
      (await t.http.post('/v1/auth/logout', { refreshToken: session.refreshToken })).status,
    ).toBe(204);
    const records = await t.app
      .get<Redis>(REDIS)
      .hgetall(`${t.config.redis.keyPrefix}:pending-revocations`);
    const family = (
      await t.db.pool.query(`SELECT id FROM refresh_token_families WHERE user_id = $1`, [
        session.user.id,
      ])
    ).rows[0];
    expect(Object.keys(records)).not.toContain(family.id);
  });

  it('a checkout whose commit answer was lost answers 201; its retry with the key replays that order', async () => {
    const buyer = await registerCustomer(t.http);
    const productId = await insertProduct(t.db.pool, { stock: 3 });
    const key = newKey();
    const body = { items: [{ productId, quantity: 2 }] };
    const lost = proxy.loseNextCommitAnswer();
    const first = await t.http.post('/v1/orders', body, {
      token: buyer.accessToken,
      idempotencyKey: key,
    });
    await lost;
    expect(first.status).toBe(201);
    const again = await t.http.post('/v1/orders', body, {
      token: buyer.accessToken,
      idempotencyKey: key,
    });
    expect(again.status).toBe(201);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(again.body.id).toBe(first.body.id);
    expect(await stockOf(t.db.pool, productId)).toEqual({ onHand: 3, reserved: 2 });
    await assertStockInvariants(t.db.pool, [productId]);
  });

  it("a keyed payment start whose answer's record loses its connection (a blink; or the statement's answer lost) answers its 201, the record completed: the retry replays it", async () => {
    const buyer = await registerCustomer(t.http);
    const finish = /^\s*(WITH|UPDATE)\b[\s\S]*SET state = 'completed'/;
    for (const blink of [
      () => proxy.cutNextStatement(finish),
      () => proxy.loseNextAnswer(finish),
    ]) {
      const productId = await insertProduct(t.db.pool, { stock: 3 });
      const order = await t.http.post(
        '/v1/orders',
        { items: [{ productId, quantity: 1 }] },
        { token: buyer.accessToken, idempotencyKey: newKey() },
      );
      expect(order.status).toBe(201);
      const key = newKey();
      const cut = blink();
      const first = await t.http.post(
        `/v1/orders/${order.body.id}/payment`,
        {},
        { token: buyer.accessToken, idempotencyKey: key },
      );
      await cut;
      expect([first.status, first.body.paymentIntentId]).toEqual([201, expect.any(String)]);
      const { rows } = await t.db.pool.query(
        `SELECT state, response_status FROM idempotency_keys WHERE key = $1`,
        [key],
      );
      expect(rows).toEqual([{ state: 'completed', response_status: 201 }]);
      const again = await t.http.post(
        `/v1/orders/${order.body.id}/payment`,
        {},
        { token: buyer.accessToken, idempotencyKey: key },
      );
      expect([again.status, again.headers.get('idempotent-replayed')]).toEqual([201, 'true']);
      expect(again.body.paymentIntentId).toBe(first.body.paymentIntentId);
    }
  });
});
