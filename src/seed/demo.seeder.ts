import { Inject, Injectable } from '@nestjs/common';
import { AccountService } from '../auth/account.service';
import { CatalogSeeder } from '../catalog/catalog.seeder';
import { DEMO_ADMIN, DEMO_CUSTOMER } from '../auth/demo-credentials';
import { APP_CONFIG, AppConfig } from '../config/config';

/**
 * Demo data for development: each feature contributes its part here, idempotently
 * (running the seed twice changes nothing). Returns lines to print (e.g. demo credentials).
 */
@Injectable()
export class DemoSeeder {
  constructor(
    private readonly accounts: AccountService,
    private readonly catalog: CatalogSeeder,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  private get currency(): string {
    return this.config.currency;
  }

  async run(): Promise<string[]> {
    // demo credentials exist only on development instances (the first admin: npm run admin:create)
    if (!this.config.isDevelopment)
      throw new Error('demo data is loaded only with NODE_ENV=development');
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
}
