import { Inject, Injectable } from '@nestjs/common';
import { AccountService } from '../auth/account.service';
import { CatalogSeeder } from '../catalog/catalog.seeder';
import { DEMO_ADMIN, DEMO_CUSTOMER } from '../auth/demo-credentials';
import { normalizeEmail } from '../common/email';
import { APP_CONFIG, AppConfig } from '../config/config';
import { EXIT_NOT_SEEDED } from '../config/exit-codes';
import { TransactionHost } from '../database/transaction-host';

/**
 * Demo data refused: the database holds data the seed did not create (exit code EXIT_NOT_SEEDED,
 * on which `npm start` goes on without demo data). One line, naming what was found.
 */
export class DatabaseInUse extends Error {
  readonly exitCode = EXIT_NOT_SEEDED;

  constructor(found: string[]) {
    super(
      `demo data not loaded: this database holds data the seed did not create (${found.join(', ')}); ` +
        'the seed loads only into an empty database or one holding its own data alone (nothing was written)',
    );
  }
}

/**
 * Demo data for development: each feature contributes its part here, idempotently
 * (running the seed twice changes nothing). Returns lines to print (e.g. demo credentials).
 *
 * Only into a database that holds nothing but what the seed itself creates and what its demo
 * accounts did (the demo customer's orders: a developer trying the shop): no account, product or
 * category other than the demo ones, and no order of another account. NODE_ENV=development and a local
 * database were its only guards, and `npm start` makes an unset NODE_ENV development: on a
 * one-box shop whose database is on localhost, it added demo accounts (an admin among them) and
 * twenty products with stock, two categories, to the live catalog (operator-mistakes review).
 * A developer's own accounts and orders count too: `npm start` then goes on without demo data.
 */
@Injectable()
export class DemoSeeder {
  constructor(
    private readonly accounts: AccountService,
    private readonly catalog: CatalogSeeder,
    private readonly tx: TransactionHost,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  private get currency(): string {
    return this.config.currency;
  }

  async run(): Promise<string[]> {
    // demo credentials exist only on development instances (the first admin: npm run admin:create)
    if (!this.config.isDevelopment)
      throw new Error('demo data is loaded only with NODE_ENV=development');
    const found = await this.foreignData();
    if (found.length > 0) throw new DatabaseInUse(found);
    await this.accounts.ensureAccount(DEMO_ADMIN.email, DEMO_ADMIN.password, 'admin', 'Demo Admin');
    await this.accounts.ensureAccount(
      DEMO_CUSTOMER.email,
      DEMO_CUSTOMER.password,
      'customer',
      'Demo Customer',
    );
    const products = await this.catalog.run(this.currency);
    return [
      `demo admin:    ${DEMO_ADMIN.email} / ${DEMO_ADMIN.password}`,
      `demo customer: ${DEMO_CUSTOMER.email} / ${DEMO_CUSTOMER.password}`,
      `demo catalog:  ${products} products`,
    ];
  }

  /** What the database holds that the seed did not create, counted ('3 accounts'); [] when nothing. */
  private async foreignData(): Promise<string[]> {
    const [own] = await this.tx.query<{ accounts: number; orders: number }>(
      `SELECT (SELECT count(*) FROM users WHERE email <> ALL ($1::text[]))::int AS accounts,
              (SELECT count(*) FROM orders o JOIN users u ON u.id = o.user_id
                WHERE u.email <> ALL ($1::text[]))::int AS orders`,
      [[DEMO_ADMIN.email, DEMO_CUSTOMER.email].map(normalizeEmail)],
    );
    const catalog = await this.catalog.foreignRows();
    const counts: [number, string][] = [
      [own.orders, 'order'],
      [own.accounts, 'account'],
      [catalog.products, 'product'],
      [catalog.categories, 'category'],
    ];
    return counts
      .filter(([n]) => n > 0)
      .map(
        ([n, what]) => `${n} ${n === 1 ? what : what === 'category' ? 'categories' : `${what}s`}`,
      );
  }
}
