import { QueryFailedError } from 'typeorm';
import type { ProductRepository } from '../catalog/product.repository';
import { DomainError } from '../common/errors/domain-error';
import type { TransactionHost } from '../database/transaction-host';
import type { CatalogCache } from '../catalog/catalog-cache';
import type { InventoryRepository } from './inventory.repository';
import { InventoryService } from './inventory.service';
import type { SoldOutMarks } from './sold-out';
import type {
  Availability,
  StockLine,
  StockReservationRepository,
} from './stock-reservation.repository';
import { StockReservationService } from './stock-reservation.service';

const P1 = '0c8e4f2a-1111-4222-8333-944445555601';
const P2 = '0c8e4f2a-1111-4222-8333-944445555602';
const ORDER = '0c8e4f2a-1111-4222-8333-944445555699';

/**
 * The sold-out marks (sold-out.ts) are written from what a transaction saw, so their timing is
 * the point: a mark carries the generation read BEFORE the observing transaction committed (a
 * release committed meanwhile bumps it and the mark is refused), and a clear runs only AFTER the
 * releasing transaction committed (before it, a checkout could mark the product sold out again
 * from the rows the release has not changed yet), never after a rollback.
 */

/** A SoldOutMarks whose generation moves on when the test says (a release committed elsewhere). */
function fakeMarks() {
  let generation = 'gen-before-commit';
  return {
    marks: {
      generation: jest.fn(() => generation),
      markSoldOut: jest.fn<void, [string[], string | null]>(),
      cleared: jest.fn<void, [string[]]>(),
    },
    /** Another process's commit raised availability: a new generation. */
    moveOn: () => void (generation = 'gen-after-commit'),
  };
}

/** A TransactionHost with one open transaction: afterCommitOrUnknown callbacks wait for commit(). */
function fakeTx() {
  let pending: (() => void)[] = [];
  return {
    tx: { afterCommitOrUnknown: jest.fn((fn: () => void) => void pending.push(fn)) },
    commit: () => {
      const run = pending;
      pending = [];
      run.forEach((fn) => fn());
    },
    rollback: () => void (pending = []),
  };
}

/** The reservation statement as the repository queues it, for the test to settle. */
function fakeStock(reserved: StockLine[] = []) {
  const sent: {
    mapError?: (err: unknown) => unknown;
    onCommitted?: (left: Availability[]) => void;
  } = {};
  return {
    sent,
    stock: {
      reserveAllOnCommit: jest.fn(
        (
          _orderId: string,
          _lines: StockLine[],
          mapError: (err: unknown) => unknown,
          onCommitted?: (left: Availability[]) => void,
        ) => Object.assign(sent, { mapError, onCommitted }),
      ),
      reservedLines: jest.fn().mockResolvedValue(reserved),
      settleOnCommit: jest.fn(),
    },
  };
}

/** reserve_stock's own shortfall error, as the driver reports it. */
const shortfall = (products: { productId: string; requested: number; available: number }[]) =>
  new QueryFailedError('SELECT reserve_stock(…)', [], {
    code: 'P0001',
    message: 'insufficient_stock',
    detail: JSON.stringify(products),
  } as unknown as Error);

function reservationService() {
  const { marks, moveOn } = fakeMarks();
  const { tx, commit, rollback } = fakeTx();
  const { stock, sent } = fakeStock([
    { productId: P1, quantity: 1 },
    { productId: P2, quantity: 2 },
  ]);
  const service = new StockReservationService(
    stock as unknown as StockReservationRepository,
    marks as unknown as SoldOutMarks,
    tx as unknown as TransactionHost,
    {} as ProductRepository,
  );
  return { service, marks, moveOn, commit, rollback, stock, sent };
}

describe('StockReservationService and the sold-out marks', () => {
  const lines = [
    { productId: P1, quantity: 1 },
    { productId: P2, quantity: 2 },
  ];

  it('a committed reservation marks what it left at 0 with the generation read before the commit', () => {
    const { service, marks, moveOn, sent } = reservationService();
    service.reserveOnCommit(ORDER, lines);
    moveOn(); // a release committed between the reservation's start and its commit
    sent.onCommitted?.([
      { productId: P1, available: 0 },
      { productId: P2, available: 3 },
    ]);
    expect(marks.markSoldOut).toHaveBeenCalledTimes(1);
    // the generation of after the commit would let a mark through over the release
    expect(marks.markSoldOut).toHaveBeenCalledWith([P1], 'gen-before-commit');
  });

  it('a refused reservation (its shortfall) marks what it found at 0 with the generation read before', () => {
    const { service, marks, moveOn, sent } = reservationService();
    service.reserveOnCommit(ORDER, lines);
    moveOn();
    const mapped = sent.mapError?.(
      shortfall([
        { productId: P1, requested: 1, available: 0 },
        { productId: P2, requested: 2, available: 1 },
      ]),
    );
    expect(mapped).toBeInstanceOf(DomainError);
    expect((mapped as DomainError).code).toBe('INSUFFICIENT_STOCK');
    expect(marks.markSoldOut).toHaveBeenCalledTimes(1);
    expect(marks.markSoldOut).toHaveBeenCalledWith([P1], 'gen-before-commit');
  });

  it("a release clears its products' marks once it commits — not before, and only once", async () => {
    const { service, marks, commit, stock } = reservationService();
    await service.release(ORDER);
    expect(stock.settleOnCommit).toHaveBeenCalledWith('release', ORDER, [
      { productId: P1, quantity: 1 },
      { productId: P2, quantity: 2 },
    ]);
    // still uncommitted: a checkout marking P1 sold out now would read the rows not released yet
    expect(marks.cleared).not.toHaveBeenCalled();
    commit();
    expect(marks.cleared).toHaveBeenCalledTimes(1);
    expect(marks.cleared).toHaveBeenCalledWith([P1, P2]);
  });

  it('a release that rolls back clears nothing', async () => {
    const { service, marks, rollback, commit } = reservationService();
    await service.release(ORDER);
    rollback();
    commit(); // (nothing left to run)
    expect(marks.cleared).not.toHaveBeenCalled();
  });
});

describe('InventoryService and the sold-out marks', () => {
  function inventoryService() {
    const { marks } = fakeMarks();
    const { tx, commit, rollback } = fakeTx();
    const inventory = {
      adjust: jest.fn().mockResolvedValue({ productId: P1, onHand: 7, reserved: 2 }),
      lockItem: jest.fn().mockResolvedValue(undefined),
    };
    const cache = { invalidate: jest.fn().mockResolvedValue(undefined) };
    const service = new InventoryService(
      inventory as unknown as InventoryRepository,
      marks as unknown as SoldOutMarks,
      cache as unknown as CatalogCache,
      tx as unknown as TransactionHost,
      { now: () => new Date('2026-03-01T12:00:00Z') },
    );
    return { service, marks, commit, rollback, inventory };
  }
  const admin = { userId: 'admin-1' } as Parameters<InventoryService['adjustStock']>[0];

  it("a stock adjustment clears the product's mark once it commits, not before", async () => {
    const { service, marks, commit } = inventoryService();
    await expect(
      service.adjustStock(admin, P1, { delta: 5, reason: 'restock' }),
    ).resolves.toMatchObject({ onHand: 7, available: 5 });
    expect(marks.cleared).not.toHaveBeenCalled();
    commit();
    expect(marks.cleared).toHaveBeenCalledTimes(1);
    expect(marks.cleared).toHaveBeenCalledWith([P1]);
  });

  it('a stock adjustment that rolls back clears nothing', async () => {
    const { service, marks, rollback } = inventoryService();
    await service.adjustStock(admin, P1, { delta: 5, reason: 'restock' });
    rollback();
    expect(marks.cleared).not.toHaveBeenCalled();
  });

  it('a product taken off sale has its mark cleared once that commits, never after a rollback', async () => {
    const { service, marks, commit, rollback, inventory } = inventoryService();
    await service.takingOffSale(P1);
    expect(inventory.lockItem).toHaveBeenCalledWith(P1);
    expect(marks.cleared).not.toHaveBeenCalled();
    commit();
    expect(marks.cleared).toHaveBeenCalledTimes(1);
    expect(marks.cleared).toHaveBeenCalledWith([P1]);

    await service.takingOffSale(P2);
    rollback();
    expect(marks.cleared).toHaveBeenCalledTimes(1);
  });
});
