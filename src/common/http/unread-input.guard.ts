import { CanActivate, ExecutionContext, Injectable, Type } from '@nestjs/common';
import { ROUTE_ARGS_METADATA } from '@nestjs/common/constants';
import { RouteParamtypes } from '@nestjs/common/enums/route-paramtypes.enum';
import type { FastifyRequest } from 'fastify';
import { RequestValidationError } from '../errors/problem-details.filter';
import { unknownQueryParameters } from './validation';

/** What a handler reads of the request, from its parameter decorators. */
interface ReadInput {
  /** Every query parameter (a whole-query DTO), or these names. */
  query: 'dto' | ReadonlySet<string>;
  /** Whether it reads a body: `@Body()` (the ValidationPipe decides) or `@Req()` (a raw body: webhooks). */
  body: boolean;
}

/**
 * Input a handler does not read is a 400 VALIDATION_FAILED on every route (API.md), not only
 * where a DTO (whitelist + forbidNonWhitelisted) happens to exist:
 * - unknown query parameters: for a handler with `@Query() dto` the global ValidationPipe
 *   decides; for `@Query('name')` only those names are accepted; a handler that reads no query
 *   accepts none — so `?cb=<random>` can neither be smuggled past validation nor make a distinct
 *   cache entry;
 * - a body on a route that takes none (cancel, start a payment, fulfil, the DELETEs): left out
 *   or `{}` only, so a stray field — a NUL in it included — is refused as on every DTO route
 *   (HOUSE_STYLE 13). The idempotency fingerprint takes the two as the same request.
 */
@Injectable()
export class UnreadInputGuard implements CanActivate {
  private readonly byHandler = new WeakMap<object, ReadInput>();

  canActivate(context: ExecutionContext): boolean {
    if (context.getType() !== 'http') return true;
    const request = context.switchToHttp().getRequest<FastifyRequest>();
    this.checkQuery(request.query, context);
    this.checkBody(request.body, context);
    return true;
  }

  private checkQuery(query: unknown, context: ExecutionContext): void {
    if (typeof query !== 'object' || query === null) return;
    const names = Object.keys(query);
    if (names.length === 0) return;
    const allowed = this.readBy(context).query;
    if (allowed === 'dto') return;
    const unknown = names.filter((name) => !allowed.has(name));
    if (unknown.length === 0) return;
    throw unknownQueryParameters(unknown);
  }

  private checkBody(body: unknown, context: ExecutionContext): void {
    if (body === undefined || isEmptyObject(body) || this.readBy(context).body) return;
    throw new RequestValidationError([
      { field: 'body', message: 'this route takes no body (leave it out, or send {})' },
    ]);
  }

  private readBy(context: ExecutionContext): ReadInput {
    const handler = context.getHandler();
    let read = this.byHandler.get(handler);
    if (!read) {
      read = inputReadBy(context.getClass(), handler.name);
      this.byHandler.set(handler, read);
    }
    return read;
  }
}

/** `{}`: what a left-out body means on every route (the ValidationPipe makes it an empty DTO). */
function isEmptyObject(value: unknown): boolean {
  return (
    typeof value === 'object' &&
    value !== null &&
    Object.getPrototypeOf(value) === Object.prototype &&
    Object.keys(value).length === 0
  );
}

/** From the route-argument metadata Nest's @Query(), @Body() and @Req() decorators record on the handler. */
function inputReadBy(controller: Type<unknown>, method: string): ReadInput {
  const args = (Reflect.getMetadata(ROUTE_ARGS_METADATA, controller, method) ?? {}) as Record<
    string,
    { data?: unknown }
  >;
  const names = new Set<string>();
  let query: ReadInput['query'] = names;
  let body = false;
  for (const [key, arg] of Object.entries(args)) {
    const type = Number(key.split(':')[0]);
    if (type === Number(RouteParamtypes.BODY) || type === Number(RouteParamtypes.REQUEST))
      body = true;
    if (type !== Number(RouteParamtypes.QUERY)) continue;
    if (typeof arg.data !== 'string') query = 'dto';
    else names.add(arg.data);
  }
  return { query, body };
}
