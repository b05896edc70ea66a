import { Inject, Injectable } from '@nestjs/common';
import { ProductRepository } from '../catalog/product.repository';
import { DomainError } from '../common/errors/domain-error';
import { Clock } from '../common/time/clock';
import { APP_CONFIG, AppConfig } from '../config/config';
import { TransactionHost } from '../database/transaction-host';
import { MAX_ORDER_LINES } from '../common/order-lines';
import { CartDto } from './dto/cart.dto';
import { CartRepository } from './cart.repository';
import { productNotFound } from '../catalog/product-not-found';

/** The signed-in customer's server-side cart. Prices shown are always the current ones. */
@Injectable()
export class CartService {
  constructor(
    private readonly carts: CartRepository,
    /** The catalog's: only active products go into a cart. */
    private readonly products: ProductRepository,
    private readonly tx: TransactionHost,
    private readonly clock: Clock,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  async get(userId: string): Promise<CartDto> {
    const currency = this.config.currency;
    // shown: lines a checkout would sell — products on sale, priced in the shop's currency (one
    // priced before a SHOP_CURRENCY change waits, hidden, until it is repriced)
    const lines = (await this.carts.lines(userId)).filter(
      (l) => l.active && l.currency === currency,
    );
    const items = lines.map((l) => {
      const unit = l.priceAmount;
      return {
        productId: l.productId,
        name: l.name,
        quantity: l.quantity,
        unitPrice: { amount: unit, currency },
        lineTotal: { amount: unit * l.quantity, currency },
      };
    });
    const total = items.reduce((sum, i) => sum + i.lineTotal.amount, 0);
    return { items, total: { amount: total, currency } };
  }

  /**
   * Sets a line's quantity (0 removes it); idempotent by nature. A cart holds at most
   * MAX_ORDER_LINES products (it is checked out as one order): one more is a 400. A quantity
   * above the per-customer cap of units per product is kept (API.md: a cart PUT answers 200; a
   * cart line holds nothing) — its checkout is refused with 409 PURCHASE_LIMIT_EXCEEDED.
   */
  async setQuantity(userId: string, productId: string, quantity: number): Promise<CartDto> {
    await this.tx.run(async () => {
      if (quantity === 0) {
        // a line in the cart is removed, its product on sale or not; removing one that is not
        // there is a no-op for a product on sale, and a 404 for any other — one taken off sale
        // answers as one that never existed, as on every product route (a 200 told anyone that
        // an id they had was a withdrawn product's)
        if (await this.carts.removeLine(userId, productId)) return;
        if (!(await this.products.findById(productId, { activeOnly: true })))
          throw productNotFound();
        return;
      }
      if (!(await this.products.isBuyable(productId, this.config.currency)))
        throw productNotFound();
      if (
        !(await this.carts.setQuantity(
          userId,
          productId,
          quantity,
          this.clock.now(),
          MAX_ORDER_LINES,
          this.config.currency,
        ))
      ) {
        throw new DomainError(
          'VALIDATION_FAILED',
          `A cart holds at most ${MAX_ORDER_LINES} products.`,
          {
            errors: [
              { field: 'productId', message: `the cart already holds ${MAX_ORDER_LINES} products` },
            ],
          },
        );
      }
    });
    return this.get(userId);
  }

  async clear(userId: string): Promise<void> {
    await this.carts.clear(userId);
  }
}
