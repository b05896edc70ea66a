import { ServiceUnavailableException } from '@nestjs/common';
import type { HealthCheckResult, HealthIndicatorResult } from '@nestjs/terminus';

/** What readiness tells the outside: each dependency's status (and the database breaker's state), nothing else. */
export interface ReadinessBody {
  status: HealthCheckResult['status'];
  details: Record<string, { status: string; breaker?: string }>;
}

/**
 * Strips a terminus result down to `{status, details: {<dependency>: {status, breaker?}}}`: the driver's
 * messages (internal host:port, database names, timeouts) stay in the logs, out of the body.
 */
export function readinessBody(result: Partial<HealthCheckResult>): ReadinessBody {
  const details: HealthIndicatorResult = result.details ?? {};
  return {
    status: result.status ?? 'error',
    details: Object.fromEntries(
      Object.entries(details).map(([name, value]) => [
        name,
        typeof value.breaker === 'string'
          ? { status: String(value.status), breaker: value.breaker }
          : { status: String(value.status) },
      ]),
    ),
  };
}

/** terminus answers "not ready" with a 503 carrying the full result: re-raise it stripped. */
export function toReadinessError(err: unknown): never {
  if (err instanceof ServiceUnavailableException) {
    throw new ServiceUnavailableException(
      readinessBody(err.getResponse() as Partial<HealthCheckResult>),
    );
  }
  throw err;
}
