import { ERROR_STATUS, ErrorCode } from './error-codes';

export interface FieldError {
  field: string;
  message: string;
}

export interface DomainErrorOptions {
  /** Extra machine-readable members of the problem body (e.g. the products short of stock). */
  extensions?: Record<string, unknown>;
  errors?: FieldError[];
  /** Response headers the error implies (e.g. Retry-After). */
  headers?: Record<string, string>;
}

/**
 * A failure the domain expects and names with a stable code. Thrown below the controllers;
 * rendered as RFC 9457 problem+json by the global filter.
 */
export class DomainError extends Error {
  readonly status: number;

  constructor(
    readonly code: ErrorCode,
    detail?: string,
    readonly options: DomainErrorOptions = {},
  ) {
    super(detail ?? code);
    this.name = 'DomainError';
    this.status = ERROR_STATUS[code];
  }
}
