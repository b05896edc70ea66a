import type { Socket } from 'node:net';
import { Client } from 'pg';
import { connectionSettings } from './data-source-options';

/**
 * One connection of its own to PostgreSQL, outside the pools, for asking "does the database
 * answer?" while every pool connection is busy (a sale's checkouts waiting on a hot row whose
 * holder froze) — a `SELECT 1` queued behind them times out although PostgreSQL answers all
 * along. It goes to the lock sessions' endpoint (DATABASE_LOCK_URL: PostgreSQL itself or a
 * session-mode pool; behind a transaction-mode PgBouncer it would wait for a server connection
 * the checkouts hold, as it did in the pool).
 *
 * Opened at the first probe and kept for the next ones (a flood of probes is one connection, not
 * one each), dropped on any failure, by close(), and after `idleMs` without a probe (if given).
 */
export class SideConnection {
  private client?: Promise<Client>;
  private idleTimer?: NodeJS.Timeout;

  constructor(
    private readonly connectionString: string,
    private readonly applicationName: string,
    private readonly idleMs?: number,
  ) {}

  /**
   * `SELECT 1` (or `sql`) answered within `timeoutMs` (connecting included), or a rejection saying
   * why not; `check` may refuse the answer's first row (the connection is then dropped too).
   */
  async selectOne(
    timeoutMs: number,
    sql = 'SELECT 1',
    check?: (row: Record<string, unknown> | undefined) => void,
  ): Promise<void> {
    clearTimeout(this.idleTimer);
    let timer: NodeJS.Timeout | undefined;
    const pending = this.open(timeoutMs);
    try {
      await Promise.race([
        pending.then(async (client) => {
          // (the statement is sent whether or not there is a check: `check?.(await …)` sent it only with one)
          const { rows } = await client.query(sql);
          check?.(rows[0] as Record<string, unknown> | undefined);
        }),
        new Promise((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`connection timeout: no answer within ${timeoutMs} ms`)),
            timeoutMs,
          );
        }),
      ]);
    } catch (err) {
      this.close(pending, true);
      throw err;
    } finally {
      clearTimeout(timer);
    }
    // (one timer however many probes overlapped: an earlier one's would close it under a later probe)
    clearTimeout(this.idleTimer);
    if (this.idleMs !== undefined)
      this.idleTimer = setTimeout(() => this.close(), this.idleMs).unref();
  }

  /**
   * Drops the connection (`which`: only if it is still the current one). `abort`: after a failure,
   * its socket is destroyed — a polite end() waits for a frozen server to answer, and would keep
   * the socket (and a stopping process) alive meanwhile.
   */
  close(which?: Promise<Client>, abort = false): void {
    const current = this.client;
    if (!current || (which && which !== current)) return;
    this.client = undefined;
    clearTimeout(this.idleTimer);
    current.then(
      (client) => {
        if (abort)
          (client as unknown as { connection: { stream: Socket } }).connection.stream.destroy();
        else client.end().catch(() => undefined);
      },
      () => undefined,
    );
  }

  private open(timeoutMs: number): Promise<Client> {
    if (this.client) return this.client;
    const connection = connectionSettings(this.connectionString);
    const client = new Client({
      connectionString: connection.url,
      application_name: this.applicationName,
      options: connection.options || undefined,
      connectionTimeoutMillis: timeoutMs,
    });
    const opened: Promise<Client> = client.connect().then(() => client);
    opened.catch(() => undefined); // (a failed connect is reported to the probe that awaits it)
    client.on('error', () => this.close(opened));
    client.on('end', () => this.close(opened));
    this.client = opened;
    return opened;
  }
}
