import { QueryFailedError } from 'typeorm';

/** What may be logged about a database error: never its message, detail, statement or parameters. */
export interface DatabaseErrorSummary {
  sqlState: string;
  constraint?: string;
  table?: string;
  column?: string;
  /** The statement's leading keywords and names, e.g. `INSERT INTO stock_movements`. */
  statement?: string;
}

interface DriverErrorFields {
  code?: unknown;
  constraint?: unknown;
  table?: unknown;
  column?: unknown;
  severity?: unknown;
}

const SQLSTATE = /^[0-9A-Z]{5}$/;

function driverError(err: unknown): DriverErrorFields | undefined {
  if (err instanceof QueryFailedError) return err.driverError as DriverErrorFields;
  // pg's DatabaseError (a query sent outside TypeORM) carries a severity next to its code
  const fields = err as DriverErrorFields | null | undefined;
  return typeof fields?.severity === 'string' ? fields : undefined;
}

/** The PostgreSQL SQLSTATE of a failed query, if `err` is one. */
export function sqlStateOf(err: unknown): string | undefined {
  const code = driverError(err)?.code;
  return typeof code === 'string' && SQLSTATE.test(code) ? code : undefined;
}

/**
 * What the server is short of, in plain words, for SQLSTATE class 53 (insufficient resources);
 * undefined for any other. No request's fault and no passing busyness (a lock timeout, a
 * cancelled statement): every write fails until an operator acts.
 */
export function insufficientResources(sqlState: string): string | undefined {
  if (!sqlState.startsWith('53')) return undefined;
  return SHORT_OF[sqlState] ?? 'the database is short of resources';
}

const SHORT_OF: Record<string, string> = {
  '53100': 'the database is out of disk space',
  '53200': 'the database is out of memory',
  '53300': 'the database has no connection slots left (too many connections)',
  '53400': 'the database reached a configured limit',
};

/** The first words of a statement, up to the first value, bracket or literal. */
export function statementHead(sql: string, words = 4): string {
  const head: string[] = [];
  for (const token of sql.trim().split(/\s+/)) {
    if (head.length >= words || !/^[A-Za-z_][A-Za-z0-9_.]*;?$/.test(token)) break;
    head.push(token);
  }
  return head.join(' ');
}

export function databaseErrorSummary(err: unknown, sql?: string): DatabaseErrorSummary | undefined {
  const fields = driverError(err);
  const sqlState = sqlStateOf(err);
  if (!fields || !sqlState) return undefined;
  const text = (field: unknown) => (typeof field === 'string' ? field : undefined);
  const statement = sql ?? (err instanceof QueryFailedError ? err.query : undefined);
  return {
    sqlState,
    constraint: text(fields.constraint),
    table: text(fields.table),
    column: text(fields.column),
    statement: typeof statement === 'string' ? statementHead(statement) : undefined,
  };
}
