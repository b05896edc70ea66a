import { Logger } from '@nestjs/common';
import { randomBytes } from 'node:crypto';
import { Client, DatabaseError } from 'pg';
import { RateLimitedLog } from '../common/logging/rate-limited-log';
import { connectionRefusal } from './connection-refusal';
import { SERVER_KEEPALIVES, connectionSettings } from './data-source-options';
import { connectionFailureCause, isConnectionFailure } from './db-circuit-breaker';

/** A lock held on the process's lock session; `release()` never throws. */
export interface SessionLockHold {
  /** False once the session that held the lock has ended (PostgreSQL released the lock then). */
  readonly held: boolean;
  release(): Promise<void>;
}

export interface AdvisoryLockSessionOptions {
  /**
   * Shown in pg_stat_activity, so the lock sessions of a deployment can be counted: each session
   * is `<applicationName>/<8 hex digits>` (its own name: see endDoubtful).
   */
  applicationName: string;
  /** The variable the URL comes from, named in the log line of a connect that failed (lockUrlVariable). */
  urlVariable?: string;
  /** A statement on the session that hangs longer than this ends the session. */
  queryTimeoutMs?: number;
  connectTimeoutMs?: number;
  /**
   * After a connect that timed out, holds fail at once (as an unreachable database) for this
   * long instead of each waiting for its own connect timeout; 0 (the default) = off. For a lock
   * endpoint of its own (DATABASE_LOCK_URL elsewhere): one shared with the pools has the
   * database circuit breaker for that.
   */
  failFastMs?: number;
  /**
   * When the session ends under live holds (its connection cut, its backend terminated), take
   * their locks again on a new session at once, so another process cannot take them while their
   * holders still run: a hold whose lock someone else took meanwhile is lost (`held` false). Only
   * for holders that need the lock while they run, not its continuity: a hold that was lost for a
   * moment and re-taken reads `held` true again (the email sender needs continuity: not for it).
   */
  retakeLostHolds?: boolean;
  /**
   * The server ends the session after this long without a statement (`idle_session_timeout`,
   * PostgreSQL ≥ 14; older servers ignore it), and the process sends a `SELECT 1` every third of
   * it: a holder that is alive keeps its locks, one frozen (SIGSTOP, a paused container, a hung
   * event loop) loses them. The kernel of a frozen host still answers the server's keepalives, so
   * without it such a holder kept its locks for as long as it stayed frozen. Unset: no limit.
   */
  idleSessionTimeoutMs?: number;
}

/** A lock granted to a hold of this process, and the session that holds it now. */
interface Granted {
  lockSql: string;
  params: unknown[];
  session: Client;
  /** Someone else took the lock while it was being re-taken. */
  lost: boolean;
}

const RETAKE_BACKOFF_MS = [50, 100, 250, 500, 1_000, 2_000];

/**
 * One limiter for the connect failures of every lock session of the process: one line per session
 * purpose and cause at once, then at most one per 10 s counting the rest (each keyed request, each
 * email attempt tries its own connect).
 */
const connectFailures = new RateLimitedLog();

/** How long a new session waits for a dropped session's backend to end (pg_terminate_backend). */
const TERMINATE_WAIT_MS = 2_000;

/**
 * A session's backend: its pid, start and the session's own application_name. A pid alone may
 * be another's after a restart; pid and start may be a session-mode pooler's server connection
 * handed to another client since (PgBouncer sets the new client's application_name on it).
 */
interface Backend {
  pid: number;
  started: string;
  name: string;
}

/**
 * "This process is doing X", held as a session-level advisory lock on one dedicated connection
 * per process and purpose (not a pooled one: a lock held across a request or a job must not cost
 * a pool slot each). A lock dies with what holds it: released by `release()`, and by PostgreSQL
 * itself when the process dies (kill -9 included: the socket closes and the backend ends) or the
 * database restarts. Whoever then takes the lock knows the previous holder is gone, at once,
 * without waiting for a lease.
 *
 * `lockSql` is the lock's key as SQL over the parameters, e.g. `hashtextextended($1::text, 7)`
 * (one bigint) or `0x454d, hashtext($1::text)` (two ints; the two key spaces do not overlap).
 * Two holds with one `name` in this process are refused here: a session's advisory locks are
 * re-entrant, so PostgreSQL would grant both.
 *
 * Needs a direct connection to PostgreSQL: session locks do not survive a transaction-pooling
 * PgBouncer (see docs/SCALING.md).
 */
export class AdvisoryLockSession {
  private readonly logger: Logger;
  private session?: Client;
  private connecting?: Promise<Client>;
  /** Names held (or being taken) by this process. */
  private readonly holds = new Set<string>();
  /** Granted locks by name, until released. */
  private readonly granted = new Map<string, Granted>();
  private retaking?: Promise<void>;
  /**
   * Backends of sessions this process dropped that may still be running on the server: a
   * statement that timed out (the server stalled) may have been granted its lock there, and the
   * backend keeps every lock until it notices the connection is gone — after its statement.
   * A new session ends them first (connect()), so a lock this process dropped is never held
   * by nobody: a first request is not told its own key is in use, nor a re-take lost.
   */
  private readonly doubtful = new Map<number, Backend>();
  private readonly backends = new WeakMap<Client, Backend>();
  /** Until then (performance.now()) connect() fails at once: its last attempt timed out (failFastMs). */
  private unreachableUntil = 0;
  private closed = false;
  /** The session's statements, one at a time (a pg client runs one query at a time). */
  private tail: Promise<unknown> = Promise.resolve();
  /** The current session's heartbeat (idleSessionTimeoutMs). */
  private heartbeat?: NodeJS.Timeout;

  constructor(
    private readonly url: string,
    private readonly options: AdvisoryLockSessionOptions,
  ) {
    this.logger = new Logger(`AdvisoryLockSession(${options.applicationName})`);
  }

  /**
   * Takes the lock without waiting: a hold, or null while another holder (of any process, or of
   * this one under the same name) has it. Throws when the database cannot be reached.
   */
  async tryHold(name: string, lockSql: string, params: unknown[]): Promise<SessionLockHold | null> {
    if (this.holds.has(name)) return null;
    this.holds.add(name);
    let session: Client | undefined;
    for (let attempt = 1; ; attempt++) {
      session = undefined;
      try {
        session = await this.connect();
        const rows = await this.run<{ held: boolean }>(
          session,
          `SELECT pg_try_advisory_lock(${lockSql}) AS held`,
          params,
        );
        if (rows[0]?.held) break;
        this.holds.delete(name);
        return null;
      } catch (err) {
        // a session that failed (or hung past the timeout) is replaced; one that died unnoticed
        // (the server restarted while it sat idle) is retried once on a fresh one. A key the
        // server refused (SQLSTATE class 22, data: a NUL in its text) leaves the session — and
        // every lock it holds for others — as it was: refused before any lock was taken. Any
        // other error (a cancel that may land after the grant) drops it, and its locks with it.
        const answered =
          err instanceof DatabaseError &&
          err.code?.startsWith('22') === true &&
          !isConnectionFailure(err);
        if (session && !answered) this.drop(session);
        if (!session || answered || attempt >= 2) {
          this.holds.delete(name);
          throw err;
        }
      }
    }
    const grant: Granted = { lockSql, params, session, lost: false };
    this.granted.set(name, grant);
    let released = false;
    const isHeld = () => !released && !grant.lost && this.session === grant.session;
    return {
      get held() {
        return isHeld();
      },
      release: async () => {
        if (released) return;
        released = true;
        this.granted.delete(name);
        const locked = grant.session;
        try {
          // a session that died took the lock with it
          if (this.session === locked && !grant.lost)
            await this.run(locked, `SELECT pg_advisory_unlock(${lockSql})`, params);
        } catch (err) {
          this.logger.warn(
            `could not release a lock (${(err as Error).message}); ending the lock session`,
          );
          this.drop(locked);
        } finally {
          this.holds.delete(name);
        }
      },
    };
  }

  /** Ends the session (and with it every lock it holds); later holds are refused. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.heartbeat);
    const session = this.session;
    this.session = undefined;
    await session?.end().catch(() => undefined);
  }

  private run<R extends Record<string, unknown>>(
    session: Client,
    sql: string,
    params: unknown[],
  ): Promise<R[]> {
    const result = this.tail.then(() => session.query<R>(sql, params)).then((r) => r.rows);
    this.tail = result.catch(() => undefined);
    return result;
  }

  private connect(): Promise<Client> {
    if (this.session) return Promise.resolve(this.session);
    const what = `the ${this.options.applicationName} lock session`;
    if (this.closed) return Promise.reject(new Error(`${what} is closed`));
    if (!this.connecting && performance.now() < this.unreachableUntil) {
      // a black-holed endpoint (a separate DATABASE_LOCK_URL) would otherwise cost every keyed
      // request its whole connect timeout; ETIMEDOUT: answered 503 like the failed connect
      return Promise.reject(
        Object.assign(new Error(`${what} could not connect just now; not retried for a moment`), {
          code: 'ETIMEDOUT',
        }),
      );
    }
    this.connecting ??= (async () => {
      const name = `${this.options.applicationName}/${randomBytes(4).toString('hex')}`;
      // the server's side: a holder whose host vanished (no FIN/RST, unlike a killed process)
      // is noticed in about 25 s instead of the OS default two hours, and its locks released
      const connection = connectionSettings(this.url, SERVER_KEEPALIVES);
      const session = new Client({
        connectionString: connection.url,
        application_name: name,
        connectionTimeoutMillis: this.options.connectTimeoutMs ?? 5_000,
        query_timeout: this.options.queryTimeoutMs ?? 5_000,
        keepAlive: true,
        keepAliveInitialDelayMillis: 10_000,
        options: connection.options,
      });
      // the server going away (restart, terminated backend) ends the session and its locks
      session.on('error', (err) => {
        this.logger.warn(`${what} lost: ${err.message}`);
        this.drop(session);
      });
      session.on('end', () => this.drop(session));
      try {
        await session.connect();
      } catch (err) {
        // only a connect that timed out (an endpoint that never answers): a refused one costs
        // nothing to try again, and the database may be back the next moment
        const failFastMs = this.options.failFastMs ?? 0;
        if (failFastMs > 0 && /timeout/i.test((err as Error).message))
          this.unreachableUntil = performance.now() + failFastMs;
        await session.end().catch(() => undefined);
        this.logConnectFailure(err);
        throw err;
      }
      if (this.closed) {
        await session.end().catch(() => undefined);
        throw new Error(`${what} is closed`);
      }
      try {
        const { rows } = await session.query<{ pid: number; started: string }>(
          `SELECT pid, backend_start::text AS started FROM pg_stat_activity WHERE pid = pg_backend_pid()`,
        );
        if (rows[0]) this.backends.set(session, { ...rows[0], name });
        this.unreachableUntil = 0;
        await this.endDoubtful(session);
        await this.limitIdleness(session);
      } catch (err) {
        await session.end().catch(() => undefined);
        throw err;
      }
      this.session = session;
      this.startHeartbeat(session);
      return session;
    })().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  /**
   * Why a connect failed, in the log (its caller answers 503, or fails the email attempt, saying
   * only that the database is unavailable): a server's refusal — a stale password in the lock URL
   * after a rotation, a role or database that does not exist (connectionRefusal) — at error, with
   * its SQLSTATE and the server's reason, since nothing but a change of the configuration ends it;
   * any other failure (no answer, refused by the host) at warn. Limited per purpose and cause
   * (connectFailures). The server's reason names the user or database, never a password.
   */
  private logConnectFailure(err: unknown): void {
    const refusal = connectionRefusal(err);
    const cause = refusal
      ? `refused: SQLSTATE ${refusal.sqlState}: ${refusal.reason}`
      : connectionFailureCause(err);
    const over = this.options.urlVariable ? ` over ${this.options.urlVariable}` : '';
    const line = `the ${this.options.applicationName} lock session could not connect${over} (${cause}); its locks are unavailable`;
    connectFailures.write(`${this.options.applicationName}\n${cause}`, line, (l) =>
      refusal ? this.logger.error(l) : this.logger.warn(l),
    );
  }

  /**
   * Ends (and waits for) the backends of dropped sessions that are still there, on a new
   * session before it is used; throws when one does not end in time (the caller answers as
   * for a database that cannot be reached: a 503, or the re-take's next round).
   */
  private async endDoubtful(session: Client): Promise<void> {
    if (this.doubtful.size === 0) return;
    const dropped = [...this.doubtful.values()];
    const { rows } = await session.query<{ pid: number }>(
      `SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity
        WHERE (pid, backend_start, application_name) IN (SELECT * FROM unnest($1::int[], $2::timestamptz[], $3::text[]))`,
      [dropped.map((b) => b.pid), dropped.map((b) => b.started), dropped.map((b) => b.name)],
    );
    if (rows.length > 0) {
      this.logger.warn(
        `ending ${rows.length} dropped session backend(s) that may still hold locks`,
      );
    }
    // gone, locks included (a backend releases them on its way out); polled: the one-argument
    // pg_terminate_backend does not wait (its timeout form needs PostgreSQL 14)
    for (const deadline = performance.now() + TERMINATE_WAIT_MS; rows.length > 0;) {
      const left = await session.query<{ pid: number }>(
        `SELECT pid FROM pg_stat_activity WHERE pid = ANY($1::int[])
         UNION SELECT pid FROM pg_locks WHERE pid = ANY($1::int[]) AND locktype = 'advisory'`,
        [rows.map((r) => r.pid)],
      );
      if (left.rows.length === 0) break;
      if (performance.now() >= deadline) {
        // the server too busy to end a backend: unreachable in effect (ETIMEDOUT: a 503, and
        // counted by the breaker like any connection timeout)
        throw Object.assign(
          new Error(
            `a dropped ${this.options.applicationName} session (pid ${left.rows[0].pid}) did not end in ${TERMINATE_WAIT_MS} ms`,
          ),
          { code: 'ETIMEDOUT' },
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    for (const b of dropped) if (this.doubtful.get(b.pid) === b) this.doubtful.delete(b.pid);
  }

  /** The server's idle limit for the session (idleSessionTimeoutMs); a server without it (PostgreSQL 13) keeps none. */
  private async limitIdleness(session: Client): Promise<void> {
    const limitMs = this.options.idleSessionTimeoutMs;
    if (!limitMs) return;
    await session
      .query(`SELECT set_config('idle_session_timeout', $1, false)`, [`${limitMs}ms`])
      .catch((err: { code?: string }) => {
        if (err.code !== '42704') throw err; // (undefined_object: a server before PostgreSQL 14)
      });
  }

  /** A `SELECT 1` every third of the idle limit while `session` is the current one (limitIdleness). */
  private startHeartbeat(session: Client): void {
    const limitMs = this.options.idleSessionTimeoutMs;
    if (!limitMs) return;
    clearInterval(this.heartbeat);
    this.heartbeat = setInterval(
      () => {
        if (this.session !== session) return;
        this.run(session, 'SELECT 1', []).catch((err: Error) => {
          this.logger.warn(
            `the lock session's heartbeat failed (${err.message}); ending the session`,
          );
          this.drop(session);
        });
      },
      Math.max(1, Math.floor(limitMs / 3)),
    ).unref();
  }

  /** Forgets a session (its locks are gone, or must be): the next hold opens a new one. */
  private drop(session: Client): void {
    const backend = this.backends.get(session);
    if (backend) this.doubtful.set(backend.pid, backend);
    if (this.session === session) {
      this.session = undefined;
      clearInterval(this.heartbeat);
    }
    void session.end().catch(() => undefined);
    if (this.options.retakeLostHolds) this.retakeOrphans();
  }

  /** Granted locks whose session is gone: to take again, while their holders still run. */
  private orphans(): [string, Granted][] {
    return [...this.granted].filter(([, g]) => !g.lost && g.session !== this.session);
  }

  /**
   * Takes the orphaned locks again on a new session, retrying the connection with backoff until
   * none is left (each re-taken, lost to another holder, or released) or the session is closed.
   */
  private retakeOrphans(): void {
    if (this.retaking || this.closed || this.orphans().length === 0) return;
    this.retaking = (async () => {
      for (let attempt = 0; !this.closed; attempt++) {
        const orphans = this.orphans();
        if (orphans.length === 0) return;
        try {
          const session = await this.connect();
          for (const [name, grant] of orphans) {
            const rows = await this.run<{ held: boolean }>(
              session,
              `SELECT pg_try_advisory_lock(${grant.lockSql}) AS held`,
              grant.params,
            );
            if (this.granted.get(name) !== grant) {
              // released while it was being re-taken — and perhaps held again meanwhile by a new
              // hold on this very session, on which session locks stack: let go of this one
              // again, once, leaving the new hold's
              if (rows[0]?.held)
                await this.run(
                  session,
                  `SELECT pg_advisory_unlock(${grant.lockSql})`,
                  grant.params,
                );
            } else if (rows[0]?.held) {
              grant.session = session;
            } else {
              grant.lost = true;
              this.logger.warn(
                `a lock of ${this.options.applicationName} was taken by another holder while its session was down`,
              );
            }
          }
        } catch (err) {
          this.logger.warn(`re-taking ${orphans.length} lock(s) failed: ${(err as Error).message}`);
          // a new session for the next round (drop() leaves the re-take to this loop, already running)
          if (this.session) this.drop(this.session);
          await new Promise((r) =>
            setTimeout(r, RETAKE_BACKOFF_MS[Math.min(attempt, RETAKE_BACKOFF_MS.length - 1)]),
          );
        }
      }
    })().finally(() => {
      this.retaking = undefined;
      // a session lost while re-taking leaves orphans for another round
      if (this.orphans().length > 0) this.retakeOrphans();
    });
  }
}
