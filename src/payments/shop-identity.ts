import { Injectable, OnApplicationBootstrap } from '@nestjs/common';
import { TransactionHost } from '../database/transaction-host';

/**
 * This shop's identity: the one row of `shop_identity`, a uuid made by the migration on each
 * database (migrations/1763800063000-ShopIdentity.ts) — kept by a restore of the database, and
 * another on every deployment with a database of its own. Every intent we make carries it in its
 * metadata (`shop`, NewIntent): Stripe sends each endpoint every event of the account, and
 * another deployment's intents there name order ids as ours do.
 *
 * Read at boot and kept for the life of the process (a row changed meanwhile — a clone given its
 * own — is read by the next start). A database that does not answer at boot is asked again on
 * the first use, as often as it fails: the caller (a payment start, an event's job) fails with
 * it, as it would on its own next statement.
 */
@Injectable()
export class ShopIdentity implements OnApplicationBootstrap {
  private read?: Promise<string>;

  constructor(private readonly tx: TransactionHost) {}

  onApplicationBootstrap(): void {
    // (not waited for: a database that does not answer is no reason to stop the boot)
    this.id().catch(() => undefined);
  }

  /** This shop's id (a lower-case uuid). */
  id(): Promise<string> {
    this.read ??= this.load().catch((err: unknown) => {
      this.read = undefined;
      throw err;
    });
    return this.read;
  }

  private async load(): Promise<string> {
    const rows = await this.tx.withManager((m) =>
      m.query<{ id: string }[]>(`SELECT id::text AS id FROM shop_identity`),
    );
    const id = rows[0]?.id;
    if (!id) throw new Error('shop_identity has no row: the migrations make it (run them)');
    return id;
  }
}
