import { randomUUID } from 'node:crypto';
import type { TestApp } from './test-app';

export async function createCategory(
  t: TestApp,
  token: string,
  slug = `cat-${randomUUID().slice(0, 8)}`,
) {
  const res = await t.http.post(
    '/v1/admin/categories',
    { name: `Category ${slug}`, slug },
    { token },
  );
  if (res.status !== 201) throw new Error(`category: ${res.status} ${res.text}`);
  return res.body as { id: string; name: string; slug: string };
}

export async function createProduct(
  t: TestApp,
  token: string,
  opts: {
    sku?: string;
    name?: string;
    description?: string;
    price?: number;
    stock?: number;
    categoryId?: string;
  } = {},
) {
  const res = await t.http.post(
    '/v1/admin/products',
    {
      sku: opts.sku ?? `SKU-${randomUUID().slice(0, 8)}`,
      name: opts.name ?? 'Trail mix',
      description: opts.description ?? 'Nuts and dried fruit',
      price: { amount: opts.price ?? 24900, currency: 'INR' },
      initialStock: opts.stock ?? 10,
      ...(opts.categoryId ? { categoryId: opts.categoryId } : {}),
    },
    { token },
  );
  if (res.status !== 201) throw new Error(`product: ${res.status} ${res.text}`);
  return res.body as { id: string; sku: string };
}
