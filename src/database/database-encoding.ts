/**
 * The server encoding the schema needs: emails are compared in Unicode NFC (`IS NFC NORMALIZED`,
 * `normalize()`), SKUs and search by ICU's case mapping (`und-x-icu`), which PostgreSQL offers in a
 * UTF8 database only. A database made otherwise (`createdb -E SQL_ASCII --locale=C`) passed the
 * early migrations and then failed with the server's raw errors, half migrated.
 */
const REQUIRED_ENCODING = 'UTF8';

/** The current database's name and server encoding (e.g. `UTF8`, `SQL_ASCII`, `LATIN1`). */
export async function databaseEncoding(
  query: (sql: string) => Promise<unknown>,
): Promise<{ name: string; encoding: string }> {
  // (server_encoding: every role may read it; pg_database may be closed to the app's role)
  const [row] = (await query(
    `SELECT current_database() AS name, current_setting('server_encoding') AS encoding`,
  )) as { name: string; encoding: string }[];
  return row;
}

/** Why a database encoded `encoding` is refused, and what to do; null when it is UTF8. */
export function encodingRefusal(database: { name: string; encoding: string }): string | null {
  if (database.encoding === REQUIRED_ENCODING) return null;
  return (
    `The database "${database.name}" is encoded ${database.encoding}: this application needs a ${REQUIRED_ENCODING} database ` +
    `(emails are compared in Unicode NFC, SKUs by ICU's case mapping). Create one in ${REQUIRED_ENCODING} ` +
    `(createdb -E ${REQUIRED_ENCODING} --locale=C.UTF-8 -T template0 <name>, or CREATE DATABASE … ENCODING '${REQUIRED_ENCODING}' TEMPLATE template0), ` +
    `migrate it and point DATABASE_URL at it`
  );
}
