import { CanActivate, ExecutionContext, Injectable, Type } from '@nestjs/common';
import { ROUTE_ARGS_METADATA } from '@nestjs/common/constants';
import { RouteParamtypes } from '@nestjs/common/enums/route-paramtypes.enum';
import type { FastifyRequest } from 'fastify';
import { RequestValidationError } from '../errors/problem-details.filter';

/** The query parameters a handler reads: every one (a whole-query DTO), or these names. */
type AllowedQuery = 'dto' | ReadonlySet<string>;

/**
 * Unknown query parameters are a 400 VALIDATION_FAILED on every route (API.md), not only where
 * a query DTO (whitelist + forbidNonWhitelisted) happens to exist. For a handler with
 * `@Query() dto` the global ValidationPipe decides; for `@Query('name')` only those names are
 * accepted; a handler that reads no query accepts none — so `?cb=<random>` can neither be
 * smuggled past validation nor make a distinct cache entry.
 */
@Injectable()
export class QueryAllowListGuard implements CanActivate {
  private readonly byHandler = new WeakMap<object, AllowedQuery>();

  canActivate(context: ExecutionContext): boolean {
    if (context.getType() !== 'http') return true;
    const query = context.switchToHttp().getRequest<FastifyRequest>().query;
    if (typeof query !== 'object' || query === null) return true;
    const names = Object.keys(query);
    if (names.length === 0) return true;
    const allowed = this.allowedFor(context);
    if (allowed === 'dto') return true;
    const unknown = names.filter((name) => !allowed.has(name));
    if (unknown.length === 0) return true;
    throw new RequestValidationError(
      unknown.map((field) => ({ field, message: `query parameter ${field} should not exist` })),
    );
  }

  private allowedFor(context: ExecutionContext): AllowedQuery {
    const handler = context.getHandler();
    let allowed = this.byHandler.get(handler);
    if (!allowed) {
      allowed = queryParametersOf(context.getClass(), handler.name);
      this.byHandler.set(handler, allowed);
    }
    return allowed;
  }
}

/** From the route-argument metadata Nest's @Query() decorator records on the handler. */
function queryParametersOf(controller: Type<unknown>, method: string): AllowedQuery {
  const args = (Reflect.getMetadata(ROUTE_ARGS_METADATA, controller, method) ?? {}) as Record<
    string,
    { data?: unknown }
  >;
  const names = new Set<string>();
  for (const [key, arg] of Object.entries(args)) {
    if (Number(key.split(':')[0]) !== Number(RouteParamtypes.QUERY)) continue;
    if (typeof arg.data !== 'string') return 'dto';
    names.add(arg.data);
  }
  return names;
}
