import type { EntityManager, EntityTarget, ObjectLiteral, SelectQueryBuilder } from 'typeorm';

/**
 * One batch of a purge: deletes the rows `selected` picks (a query selecting `column` of the
 * rows to go, with its LIMIT), in one statement; returns how many went. The query builder's
 * delete has no LIMIT, hence the sub-select.
 *
 * `still`: for rows that can change after they qualify (a record taken over in place), the
 * condition again, over the table's own columns and the same parameters, judged on the version
 * the DELETE reaches. The sub-select judged the version its snapshot saw; a row updated
 * meanwhile is followed to its new version (READ COMMITTED), and only the outer statement's own
 * conditions are checked on that — by ctid, PostgreSQL's Tid Scan recheck has not always looked.
 */
export async function deleteSelected<E extends ObjectLiteral>(
  m: EntityManager,
  entity: EntityTarget<E>,
  selected: SelectQueryBuilder<E>,
  column = 'id',
  still?: string,
): Promise<number> {
  const query = m
    .createQueryBuilder()
    .delete()
    .from(entity)
    .where(`${column} IN (${selected.getQuery()})`)
    .setParameters(selected.getParameters());
  if (still) query.andWhere(still);
  const result = await query.execute();
  return result.affected ?? 0;
}

/** Repeats a batched delete until a batch removes nothing; returns the total removed. */
export async function drainBatches(batch: () => Promise<number>): Promise<number> {
  let total = 0;
  for (let n = await batch(); n > 0; n = await batch()) total += n;
  return total;
}
