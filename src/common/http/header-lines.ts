/**
 * How many field lines named `name` (lower case) a request carried (`rawHeaders`: name, value,
 * …): Node's parsed headers keep only the first of several for some fields (Host,
 * Authorization) and join the others into one value (Idempotency-Key: `K, K`).
 */
export function headerLines(rawHeaders: readonly string[], name: string): number {
  let lines = 0;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (rawHeaders[i].length === name.length && rawHeaders[i].toLowerCase() === name) lines++;
  }
  return lines;
}
