import { Injectable } from '@nestjs/common';
import { TransactionHost } from '../database/transaction-host';
import { CartItemEntity } from './entities/cart-item.entity';

/** A cart line with its product as it is now (the cart shows current prices). */
interface CartLine {
  productId: string;
  name: string;
  quantity: number;
  priceAmount: number;
  currency: string;
  active: boolean;
}

/** Advisory lock class of a customer's cart ('CA'): lines are added under it, one at a time. */
const CART_LOCK_CLASS = 0x4341;

/** The `cart_items` table's repository (one cart per customer, lines keyed by product). */
@Injectable()
export class CartRepository {
  constructor(private readonly tx: TransactionHost) {}

  async lines(userId: string): Promise<CartLine[]> {
    const items = await this.tx.withManager((m) =>
      m.getRepository(CartItemEntity).find({
        where: { userId },
        relations: { product: true },
        // what a line shows, not the whole product row: 100 lines of 10,000-character
        // descriptions were read on every cart GET and PUT and thrown away
        select: {
          userId: true,
          productId: true,
          quantity: true,
          product: { id: true, name: true, priceAmount: true, currency: true, active: true },
        },
        order: { productId: 'ASC' },
      }),
    );
    return items.map((i) => ({
      productId: i.productId,
      name: i.product!.name,
      quantity: i.quantity,
      priceAmount: i.product!.priceAmount,
      currency: i.product!.currency,
      active: i.product!.active,
    }));
  }

  /**
   * Sets (not adds) the line's quantity, creating the line if needed — a new line only while the
   * cart shows fewer than `maxLines` others (lines of products off sale, or priced in another
   * currency than the shop's after a SHOP_CURRENCY change, are hidden and not
   * counted: the customer could neither see nor remove them, only empty the whole cart). A line
   * already in the cart is always updated: products back on sale can make the cart show more
   * than `maxLines`, and the customer must still be able to change (and remove) its lines.
   * Inside a transaction: the customer's cart lock is taken first, so concurrent additions are
   * counted one after the other (no two both see 99). False when the cart is full (nothing written).
   */
  async setQuantity(
    userId: string,
    productId: string,
    quantity: number,
    at: Date,
    maxLines: number,
    currency: string,
  ): Promise<boolean> {
    // raw SQL: a transaction-scoped advisory lock, which the query builder has no words for
    await this.tx.query(`SELECT pg_advisory_xact_lock(${CART_LOCK_CLASS}, hashtext($1::text))`, [
      userId,
    ]);
    return this.tx.withManager(async (m) => {
      const items = m.getRepository(CartItemEntity);
      if ((await items.update({ userId, productId }, { quantity, updatedAt: at })).affected)
        return true;
      const shown = await items.count({ where: { userId, product: { active: true, currency } } });
      if (shown >= maxLines) return false;
      await items.upsert({ userId, productId, quantity, updatedAt: at }, ['userId', 'productId']);
      return true;
    });
  }

  /** Whether the cart held a line of the product (now removed). */
  async removeLine(userId: string, productId: string): Promise<boolean> {
    const result = await this.tx.withManager((m) =>
      m.getRepository(CartItemEntity).delete({ userId, productId }),
    );
    return (result.affected ?? 0) > 0;
  }

  /** Empties the cart (DELETE /v1/cart). */
  async clear(userId: string): Promise<void> {
    await this.tx.withManager((m) => m.getRepository(CartItemEntity).delete({ userId }));
  }

  /**
   * Takes the lines the cart shows — those of products on sale, priced in `currency` (the
   * shop's) — out of the cart and returns them
   * (a cart checkout reads and clears in one statement). Lines of products off sale stay, hidden
   * as the cart hides them, and come back if the product does.
   */
  async takeShown(
    userId: string,
    currency: string,
  ): Promise<{ productId: string; quantity: number }[]> {
    const result = await this.tx.withManager((m) =>
      m
        .createQueryBuilder()
        .delete()
        .from(CartItemEntity)
        .where('user_id = :userId', { userId })
        .andWhere('product_id IN (SELECT id FROM products WHERE active AND currency = :currency)', {
          currency,
        })
        .returning(['productId', 'quantity'])
        .execute(),
    );
    return (result.raw as { product_id: string; quantity: number }[]).map((r) => ({
      productId: r.product_id,
      quantity: r.quantity,
    }));
  }
}
