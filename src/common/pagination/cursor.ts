import { DomainError } from '../errors/domain-error';

/** Opaque keyset cursors: base64url JSON of the last row's sort key. */
export function encodeCursor(key: Record<string, string | number>): string {
  return Buffer.from(JSON.stringify(key), 'utf8').toString('base64url');
}

export function decodeCursor<T extends Record<string, string | number>>(
  cursor: string | undefined,
  shape: Record<keyof T, 'string' | 'number'>,
): T | null {
  if (cursor === undefined) return null;
  try {
    const value = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown;
    if (typeof value === 'object' && value !== null) {
      const record = value as Record<string, unknown>;
      const ok = Object.entries(shape).every(([k, type]) => typeof record[k] === type);
      if (ok) return record as T;
    }
  } catch {
    /* fall through */
  }
  throw new DomainError('VALIDATION_FAILED', 'The cursor is malformed.', {
    errors: [{ field: 'cursor', message: 'cursor is malformed' }],
  });
}
