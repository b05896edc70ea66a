import { Inject, Injectable } from '@nestjs/common';
import type { Principal } from '../auth/principal';
import { DomainError } from '../common/errors/domain-error';
import { IdGenerator } from '../common/ids';
import { Clock } from '../common/time/clock';
import { APP_CONFIG, AppConfig } from '../config/config';
import { TransactionHost, pgConstraint } from '../database/transaction-host';
import { InventoryService } from '../inventory/inventory.service';
import { OutboxRepository } from '../outbox/outbox.repository';
import { CatalogCache } from './catalog-cache';
import { mapProduct } from './catalog.mapper';
import {
  CategoryDto,
  CreateCategoryDto,
  CreateProductDto,
  MoneyInputDto,
  ProductDto,
  UpdateProductDto,
} from './dto/catalog.dto';
import { ProductRepository } from './product.repository';
import { productNotFound } from './product-not-found';
import { ObjectStorage } from './object-storage';

/** Catalog writes (admin). Each invalidates the read cache after its commit. */
@Injectable()
export class CatalogAdminService {
  constructor(
    private readonly products: ProductRepository,
    private readonly inventory: InventoryService,
    private readonly cache: CatalogCache,
    private readonly tx: TransactionHost,
    private readonly clock: Clock,
    private readonly ids: IdGenerator,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly storage: ObjectStorage,
    private readonly outbox: OutboxRepository,
  ) {}

  /**
   * Creates the product and — asking the inventory — its stock (on hand = initialStock, with
   * the 'initial' ledger row), in one transaction, which also reads the answer back: a create
   * whose answer cannot be read fails whole, so a retry (even without a key) is not told SKU_TAKEN
   * about a product it never saw.
   */
  async createProduct(actor: Principal, dto: CreateProductDto): Promise<ProductDto> {
    this.checkPrice(dto.price);
    const id = this.ids.uuid();
    const product = await this.unique('products_sku_key', 'SKU_TAKEN', 'This SKU is taken.', () =>
      this.tx.run(async () => {
        if (dto.categoryId) await this.mustHaveCategory(dto.categoryId);
        const at = this.clock.now();
        await this.products.insert({
          id,
          sku: dto.sku,
          name: dto.name,
          description: dto.description,
          priceAmount: dto.price.amount,
          currency: dto.price.currency,
          categoryId: dto.categoryId ?? null,
          at,
        });
        await this.inventory.createItem(id, dto.initialStock, actor.userId, at);
        return this.read(id);
      }),
    );
    await this.cache.invalidate();
    return product;
  }

  async updateProduct(id: string, dto: UpdateProductDto): Promise<ProductDto> {
    if (dto.price) this.checkPrice(dto.price);
    const product = await this.tx.run(async () => {
      if (dto.categoryId) await this.mustHaveCategory(dto.categoryId);
      // (locked as the UPDATE below locks it: what an order line copies, as it was; the row is
      // ours until COMMIT, so the UPDATE finds it)
      const before = await this.products.lockOrderTerms(id);
      if (!before) throw productNotFound();
      await this.products.update(
        id,
        {
          name: dto.name,
          description: dto.description,
          priceAmount: dto.price?.amount,
          currency: dto.price?.currency,
          categoryId: dto.categoryId,
          active: dto.active,
        },
        this.clock.now(),
      );
      if (dto.active === false) await this.takingOffSale(id);
      // only a change of what an order line copies waits for the stock row: an admin form that
      // sends the whole product (its name unchanged) with a new description did not wait for a
      // sale's checkouts, nor hold the product's paid orders' confirmations behind them
      else if (
        (dto.name !== undefined && dto.name !== before.name) ||
        (dto.price &&
          (dto.price.amount !== before.priceAmount || dto.price.currency !== before.currency))
      )
        await this.inventory.changingOrderTerms(id);
      return this.read(id); // in the transaction, as for a create
    });
    await this.cache.invalidate();
    return product;
  }

  /**
   * In the transaction that takes the product off sale: its stock row waits for the checkouts in
   * flight (InventoryService), and the unpaid orders holding its units that no payment has begun
   * for are released by the worker (`product.withdrawn`, in this transaction: never lost, never
   * for a change that did not commit; for one already off sale it finds none left to release).
   */
  private async takingOffSale(id: string): Promise<void> {
    await this.inventory.takingOffSale(id);
    await this.outbox.add('product.withdrawn', id, { productId: id });
  }

  /** Deactivates (orders keep their snapshots; the product leaves the catalog). */
  async deactivate(id: string): Promise<void> {
    const found = await this.tx.run(async () => {
      if (!(await this.products.update(id, { active: false }, this.clock.now()))) return false;
      await this.takingOffSale(id);
      return true;
    });
    if (!found) throw productNotFound();
    await this.cache.invalidate();
  }

  /**
   * In a transaction, as createProduct: a create whose COMMIT answer is lost is found committed
   * (TransactionHost asks the database) and answered 201 — not 503, after which the admin's retry
   * would be told SLUG_TAKEN about a category it never saw.
   */
  async createCategory(dto: CreateCategoryDto): Promise<CategoryDto> {
    const category = { id: this.ids.uuid(), name: dto.name, slug: dto.slug };
    if (!(await this.tx.run(() => this.products.insertCategory(category)))) {
      throw new DomainError('SLUG_TAKEN', 'A category with this slug exists.');
    }
    await this.cache.invalidate();
    return { id: category.id, name: category.name, slug: category.slug };
  }

  private async read(id: string): Promise<ProductDto> {
    const row = await this.products.findDetail(id, { activeOnly: false });
    if (!row) throw productNotFound();
    return mapProduct(row, (key) => this.storage.publicUrl(key));
  }

  /**
   * A price in the shop's currency that one unit of can be paid: above ORDER_MAXIMUM_AMOUNT the
   * product would be listed and never sold (every checkout of it 409 ORDER_NOT_PAYABLE). Free
   * (0) stays allowed: it sells beside paid products.
   */
  private checkPrice(price: MoneyInputDto): void {
    if (price.currency !== this.config.currency) {
      throw new DomainError('VALIDATION_FAILED', `Prices are in ${this.config.currency}.`, {
        errors: [{ field: 'price.currency', message: `must be ${this.config.currency}` }],
      });
    }
    if (price.amount % this.config.amountStep !== 0) {
      // (Stripe's three-decimal currencies: every amount charged ends in 0 — a unit at any other
      // price could never be paid)
      throw new DomainError(
        'VALIDATION_FAILED',
        `Prices in ${this.config.currency} are multiples of ${this.config.amountStep} minor units: the payment provider charges no other amount.`,
        {
          errors: [
            { field: 'price.amount', message: `must be a multiple of ${this.config.amountStep}` },
          ],
        },
      );
    }
    if (price.amount > this.config.orderMaximumAmount) {
      throw new DomainError(
        'VALIDATION_FAILED',
        `A price may be at most ${this.config.orderMaximumAmount} minor units: the largest order the payment provider charges.`,
        {
          errors: [
            {
              field: 'price.amount',
              message: `must not be greater than ${this.config.orderMaximumAmount}`,
            },
          ],
        },
      );
    }
  }

  private async mustHaveCategory(id: string): Promise<void> {
    if (!(await this.products.categoryExists(id))) {
      throw new DomainError('CATEGORY_NOT_FOUND', 'No such category.');
    }
  }

  private async unique<T>(
    constraint: string,
    code: 'SKU_TAKEN',
    detail: string,
    work: () => Promise<T>,
  ): Promise<T> {
    try {
      return await work();
    } catch (err) {
      if (pgConstraint(err) === constraint) throw new DomainError(code, detail);
      throw err;
    }
  }
}
