import { Injectable } from '@nestjs/common';
import { TransactionHost } from '../database/transaction-host';
import { PaymentOrphanReportEntity } from './entities/payment-orphan-report.entity';
import { PaymentOrphanSweepEntity } from './entities/payment-orphan-sweep.entity';
import type { OrphanKind } from './payment-orphans';

/** A pass of the sweep under way: its end, the list it is on, the cursor of that list's next page. */
export interface SweepPass {
  before: Date;
  list: OrphanKind;
  after: string | null;
}

/** The sweep's state as a run read it (`version`: what its write is guarded by). */
export interface SweepState {
  /** The watermark: what the provider made before it has been checked. */
  checkedBefore: Date;
  pass: SweepPass | null;
  version: number;
}

/** What was found, as a report is remembered by: an intent paid or payable, a refund, a dispute. */
export type OrphanFinding = 'paid-intent' | 'payable-intent' | 'refund' | 'dispute';

const LISTS: readonly string[] = ['intent', 'refund', 'dispute'] satisfies OrphanKind[];

/**
 * The orphan sweep's state (`payment_orphan_sweep`, one row) and the orphans it reported
 * (`payment_orphan_reports`): one aggregate, written from here only.
 */
@Injectable()
export class PaymentOrphanSweepRepository {
  constructor(private readonly tx: TransactionHost) {}

  async read(): Promise<SweepState> {
    const row = await this.tx.withManager((m) =>
      m.getRepository(PaymentOrphanSweepEntity).findOneBy({ singleton: true }),
    );
    if (!row) throw new Error('payment_orphan_sweep has no row: the migrations make it (run them)');
    const list = row.passList;
    return {
      checkedBefore: row.checkedBefore,
      pass:
        row.passBefore && list !== null && LISTS.includes(list)
          ? { before: row.passBefore, list: list as OrphanKind, after: row.passAfter }
          : null,
      version: row.version,
    };
  }

  /**
   * Writes the watermark and the pass over the state read as `version` (a guarded UPDATE …
   * WHERE version = it, raising it): false, writing nothing, when another run changed the state
   * since — it is ahead, or on the same pages.
   */
  async write(
    version: number,
    next: { checkedBefore: Date; pass: SweepPass | null },
  ): Promise<boolean> {
    const result = await this.tx.withManager((m) =>
      m
        .createQueryBuilder()
        .update(PaymentOrphanSweepEntity)
        .set({
          checkedBefore: next.checkedBefore,
          passBefore: next.pass?.before ?? null,
          passList: next.pass?.list ?? null,
          passAfter: next.pass?.after ?? null,
          version: () => 'version + 1',
        })
        .where('singleton AND version = :version', { version })
        .execute(),
    );
    return result.affected === 1;
  }

  /**
   * Remembers the orphan as reported: true for the first time (the caller raises it), false when
   * it was already — by an earlier run, or by one beside this one (the primary key decides: the
   * second insert waits for the first to commit, then inserts nothing).
   */
  async noteReported(r: {
    providerId: string;
    finding: OrphanFinding;
    madeAt: Date;
    at: Date;
  }): Promise<boolean> {
    const result = await this.tx.withManager((m) =>
      m
        .createQueryBuilder()
        .insert()
        .into(PaymentOrphanReportEntity)
        .values({
          providerId: r.providerId,
          finding: r.finding,
          madeAt: r.madeAt,
          reportedAt: r.at,
        })
        .orIgnore()
        .returning('provider_id')
        .execute(),
    );
    return Array.isArray(result.raw) && result.raw.length > 0;
  }

  /** Forgets the reports of what the provider made before `before`; how many went. */
  async forgetMadeBefore(before: Date): Promise<number> {
    const result = await this.tx.withManager((m) =>
      m
        .createQueryBuilder()
        .delete()
        .from(PaymentOrphanReportEntity)
        .where('made_at < :before', { before })
        .execute(),
    );
    return result.affected ?? 0;
  }
}
