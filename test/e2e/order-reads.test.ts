import { randomUUID } from 'node:crypto';
import { DataSource } from 'typeorm';
import { OrderRepository } from '../../src/orders/order.repository';
import { OrderTransitionsService } from '../../src/orders/order-transitions.service';
import { insertProduct } from '../support/fixtures';
import { Buyer, buyers, placeOrder } from '../support/orders';
import { TestApp, bootTestApp } from '../support/test-app';

/**
 * What OrderRepository answers other modules (payments, catalog, inventory), which ask it rather
 * than reading the orders tables themselves.
 */
describe('OrderRepository reads for other modules', () => {
  let t: TestApp;
  let orders: OrderRepository;
  let manager: DataSource['manager'];
  let alice: Buyer;
  let bob: Buyer;
  let products: string[];
  let paid: string;
  let unpaid: string;

  beforeAll(async () => {
    t = await bootTestApp();
    orders = t.app.get(OrderRepository);
    manager = t.app.get(DataSource).manager;
    [alice, bob] = await buyers(t.http, 2);
    products = [];
    for (let i = 0; i < 3; i++) products.push(await insertProduct(t.db.pool, { stock: 10 }));
    const [p0, p1, p2] = products;
    paid = (
      await placeOrder(t.http, alice, [
        { productId: p1, quantity: 2 },
        { productId: p0, quantity: 1 },
      ])
    ).body.id;
    unpaid = (await placeOrder(t.http, alice, [{ productId: p2, quantity: 1 }])).body.id;
    await placeOrder(t.http, bob, [{ productId: p2, quantity: 1 }]);
    expect((await t.app.get(OrderTransitionsService).markPaid(paid, 'test')).changed).toBe(true);
  });
  afterAll(async () => {
    await t?.close();
  });

  it('statusOf', async () => {
    expect(await orders.statusOf(paid)).toBe('PAID');
    expect(await orders.statusOf(unpaid)).toBe('INVENTORY_RESERVED');
    expect(await orders.statusOf(randomUUID())).toBeNull();
  });

  it('whether a customer has a paid order with a product, and which products they bought', async () => {
    const [p0, p1, p2] = products;
    expect(await orders.hasPaidOrderWith(alice.userId, p1)).toBe(true);
    expect(await orders.hasPaidOrderWith(alice.userId, p2)).toBe(false); // unpaid order only
    expect(await orders.hasPaidOrderWith(bob.userId, p1)).toBe(false);
    expect((await orders.productsBoughtBy(alice.userId)).sort()).toEqual([p0, p1].sort());
    expect(await orders.productsBoughtBy(bob.userId)).toEqual([]);
  });

  it('ids in a status and paid lines, as subqueries of another statement', async () => {
    const pending = orders.idsInStatusQuery(manager, ['INVENTORY_RESERVED']);
    const mine: { id: string }[] = await manager
      .createQueryBuilder()
      .select('x.id', 'id')
      .from('orders', 'x')
      .where('x.user_id = :userId', { userId: alice.userId })
      .andWhere(`x.id IN (${pending.getQuery()})`)
      .setParameters(pending.getParameters())
      .getRawMany();
    expect(mine.map((r) => r.id)).toEqual([unpaid]);

    const lines = orders.paidLinesQuery(manager);
    const pairs: { order_id: string; product_id: string }[] = await manager
      .createQueryBuilder()
      .select('a.order_id', 'order_id')
      .addSelect('a.product_id', 'product_id')
      .from(`(${lines.getQuery()})`, 'a')
      .where('a.order_id = :paid', { paid })
      .setParameters(lines.getParameters())
      .orderBy('a.product_id')
      .getRawMany();
    expect(pairs).toEqual(
      [...products.slice(0, 2)]
        .sort()
        .map((productId) => ({ order_id: paid, product_id: productId })),
    );
    const ofUnpaid = orders
      .paidLinesQuery(manager)
      .andWhere('paid_line.orderId = :unpaid', { unpaid });
    expect(await ofUnpaid.getRawMany()).toEqual([]);
  });

  it("an order's stock lines, by product id", async () => {
    const [p0, p1] = products;
    expect(await orders.findStockLines(paid)).toEqual(
      [
        { productId: p0, quantity: 1 },
        { productId: p1, quantity: 2 },
      ].sort((a, b) => (a.productId < b.productId ? -1 : 1)),
    );
    expect(await orders.findStockLines(randomUUID())).toEqual([]);
  });
});
