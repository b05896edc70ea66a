/**
 * A piece of SQL with its own `$1…$n` placeholders and their values, for the few raw statements
 * that several repositories compose into one (the checkout's order statement carries the outbox
 * event). Each repository builds its piece with `sql`; whoever splices it numbers nothing.
 */
export class SqlFragment {
  constructor(
    readonly text: string,
    readonly params: readonly unknown[],
  ) {}
}

/**
 * Tagged template: every interpolated value becomes the next `$n` placeholder; an interpolated
 * SqlFragment is spliced in with its placeholders renumbered after those before it. So
 * sql`WITH e AS (${event}) INSERT INTO t VALUES (${id}::uuid)` needs no parameter count from
 * anyone. Cast each value in the text (`${at}::timestamptz`) when the statement is sent inlined
 * (TransactionHost.sendWithCommit). A value used twice is passed twice.
 */
export function sql(strings: TemplateStringsArray, ...values: unknown[]): SqlFragment {
  let text = strings[0];
  const params: unknown[] = [];
  values.forEach((value, i) => {
    if (value instanceof SqlFragment) {
      const offset = params.length;
      text += value.text.replace(/\$(\d+)/g, (_m, n: string) => `$${offset + Number(n)}`);
      params.push(...value.params);
    } else {
      params.push(value);
      text += `$${params.length}`;
    }
    text += strings[i + 1];
  });
  return new SqlFragment(text, params);
}
