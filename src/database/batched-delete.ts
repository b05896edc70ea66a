import type { EntityManager, EntityTarget, ObjectLiteral, SelectQueryBuilder } from 'typeorm';

/**
 * One batch of a purge: deletes the rows `selected` picks (a query selecting `column` of the
 * rows to go, with its LIMIT), in one statement; returns how many went. The query builder's
 * delete has no LIMIT, hence the sub-select.
 */
export async function deleteSelected<E extends ObjectLiteral>(
  m: EntityManager,
  entity: EntityTarget<E>,
  selected: SelectQueryBuilder<E>,
  column = 'id',
): Promise<number> {
  const result = await m
    .createQueryBuilder()
    .delete()
    .from(entity)
    .where(`${column} IN (${selected.getQuery()})`)
    .setParameters(selected.getParameters())
    .execute();
  return result.affected ?? 0;
}

/** Repeats a batched delete until a batch removes nothing; returns the total removed. */
export async function drainBatches(batch: () => Promise<number>): Promise<number> {
  let total = 0;
  for (let n = await batch(); n > 0; n = await batch()) total += n;
  return total;
}
