import type { TransactionHost } from '../database/transaction-host';
import { StockMovementEntity } from './entities/stock-movement.entity';

type Movement = Pick<
  StockMovementEntity,
  'productId' | 'kind' | 'onHandDelta' | 'reservedDelta' | 'reason' | 'createdAt'
> &
  Partial<Pick<StockMovementEntity, 'orderId' | 'actorId'>>;

/**
 * Records stock movements in the ledger with the transaction's COMMIT (TransactionHost.sendWithCommit):
 * nobody reads them back inside the transaction, so they cost no round trip of their own while
 * the inventory rows they explain are locked. The statement is the query builder's INSERT.
 * Needs an open transaction; a failing insert (e.g. the once-per-order index) aborts it.
 */
export function recordOnCommit(tx: TransactionHost, movements: Movement[]): void {
  if (movements.length === 0) return;
  const [sql, params] = tx.manager
    .createQueryBuilder()
    .insert()
    .into(StockMovementEntity)
    .values(movements)
    .updateEntity(false)
    .getQueryAndParameters();
  tx.sendWithCommit(sql, params);
}
