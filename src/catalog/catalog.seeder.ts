import { Injectable } from '@nestjs/common';
import { IdGenerator } from '../common/ids';
import { Clock } from '../common/time/clock';
import { TransactionHost } from '../database/transaction-host';
import { InventoryService } from '../inventory/inventory.service';
import { CatalogCache } from './catalog-cache';
import { ProductRepository } from './product.repository';

const DEMO: Record<string, { name: string; items: [string, string, string, number, number][] }> = {
  'healthy-snacks': {
    name: 'Healthy snacks',
    items: [
      ['SNK-TRAIL', 'Trail mix', 'Almonds, cashews, raisins and pumpkin seeds', 24900, 120],
      ['SNK-MAKHANA', 'Roasted makhana', 'Fox nuts roasted with rock salt and pepper', 19900, 80],
      ['SNK-CHIKKI', 'Peanut chikki', 'Jaggery and peanut brittle, no refined sugar', 9900, 200],
      ['SNK-DATES', 'Stuffed dates', 'Medjool dates stuffed with almonds', 34900, 40],
      ['SNK-GRANOLA', 'Millet granola', 'Ragi and jowar granola with honey', 29900, 60],
      ['SNK-CHIPS', 'Banana chips', 'Kerala banana chips in coconut oil', 14900, 150],
      ['SNK-BAR', 'Protein bar', 'Peanut butter and oats bar, 20 g protein', 12900, 300],
      ['SNK-SEEDS', 'Seed mix', 'Sunflower, flax, chia and melon seeds', 17900, 90],
      ['SNK-CHANA', 'Roasted chana', 'Crunchy roasted chickpeas with masala', 8900, 250],
      ['SNK-FIGS', 'Dried figs', 'Sun-dried Afghan figs', 39900, 30],
    ],
  },
  'art-supplies': {
    name: 'Art supplies',
    items: [
      ['ART-WC12', 'Watercolour set', 'Twelve artist-grade pans with a travel palette', 89900, 25],
      ['ART-BRUSH', 'Round brush set', 'Synthetic sable brushes, sizes 2 to 12', 49900, 40],
      ['ART-PAD', 'Cold-press paper pad', '300 gsm cotton paper, A4, 12 sheets', 59900, 35],
      ['ART-PENCIL', 'Sketching pencils', 'Graphite pencils from 6H to 8B', 29900, 70],
      ['ART-INK', 'India ink', 'Waterproof black ink, 30 ml', 19900, 50],
      ['ART-GOUACHE', 'Gouache tubes', 'Six primary gouache colours, 12 ml each', 69900, 20],
      ['ART-EASEL', 'Table easel', 'Beechwood table-top easel', 149900, 10],
      ['ART-CHARCOAL', 'Willow charcoal', 'Assorted willow charcoal sticks', 15900, 60],
      ['ART-MASK', 'Masking fluid', 'Removable masking fluid for watercolour, 50 ml', 34900, 15],
      ['ART-SKETCH', 'Sketchbook', 'A5 hardbound sketchbook, 160 gsm', 39900, 45],
    ],
  },
};

/** Demo categories and products (development seed); skips what already exists. */
@Injectable()
export class CatalogSeeder {
  constructor(
    private readonly products: ProductRepository,
    private readonly inventory: InventoryService,
    private readonly cache: CatalogCache,
    private readonly tx: TransactionHost,
    private readonly ids: IdGenerator,
    private readonly clock: Clock,
  ) {}

  /** How many products and categories the database holds that are not the demo catalog's. */
  async foreignRows(): Promise<{ products: number; categories: number }> {
    const demo = Object.values(DEMO);
    return this.products.countOutside(
      demo.flatMap((c) => c.items.map(([sku]) => sku)),
      Object.keys(DEMO),
    );
  }

  async run(currency = 'INR', actorId = '00000000-0000-0000-0000-000000000000'): Promise<number> {
    let count = 0;
    await this.tx.run(async () => {
      const existing = new Map((await this.products.categories()).map((c) => [c.slug, c.id]));
      for (const [slug, category] of Object.entries(DEMO)) {
        let categoryId = existing.get(slug);
        if (!categoryId) {
          categoryId = this.ids.uuid();
          await this.products.insertCategory({ id: categoryId, name: category.name, slug });
        }
        for (const [sku, name, description, price, stock] of category.items) {
          count++;
          if (await this.products.skuExists(sku)) continue;
          const id = this.ids.uuid();
          const at = this.clock.now();
          await this.products.insert({
            id,
            sku,
            name,
            description,
            priceAmount: price,
            currency,
            categoryId,
            at,
          });
          await this.inventory.createItem(id, stock, actorId, at);
        }
      }
    });
    await this.cache.invalidate();
    return count;
  }
}
