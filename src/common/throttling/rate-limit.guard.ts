import { ExecutionContext, Inject, Injectable, Logger } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import {
  InjectThrottlerOptions,
  ThrottlerGuard,
  ThrottlerModuleOptions,
  ThrottlerRequest,
} from '@nestjs/throttler';
import type { FastifyReply } from 'fastify';
import { createHash } from 'node:crypto';
import { RATE_LIMIT_SCOPE, RateLimitScope } from '../../auth/rate-limit.decorator';
import type { AuthenticatedRequest } from '../../auth/principal';
import { APP_CONFIG, AppConfig } from '../../config/config';
import { DomainError } from '../errors/domain-error';
import { RATE_LIMIT_POLICIES, RateLimitPolicy } from './rate-limit.policies';
import { RedisThrottlerStorage } from './redis-throttler.storage';

const byName = new Map(RATE_LIMIT_POLICIES.map((p) => [p.name, p]));

/**
 * @nestjs/throttler with our policies: per-IP (the real client IP: Fastify's trust-proxy
 * setting decides whether X-Forwarded-For counts), per-account for login, per-user for order
 * creation. Answers carry IETF RateLimit-Policy / RateLimit headers; a refusal is a 429
 * RATE_LIMITED with Retry-After. Redis down: fail open or closed per policy, never a 500.
 */
@Injectable()
export class RateLimitGuard extends ThrottlerGuard {
  private readonly log = new Logger(RateLimitGuard.name);

  constructor(
    @InjectThrottlerOptions() options: ThrottlerModuleOptions,
    // explicit: the base class's own @InjectThrottlerStorage() (the in-memory store) would
    // otherwise be inherited for this parameter
    @Inject(RedisThrottlerStorage) storage: RedisThrottlerStorage,
    reflector: Reflector,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {
    super(options, storage, reflector);
  }

  protected override async shouldSkip(context: ExecutionContext): Promise<boolean> {
    return !this.config.rateLimitEnabled || context.getType() !== 'http';
  }

  protected override async handleRequest(props: ThrottlerRequest): Promise<boolean> {
    const { context, limit, ttl } = props;
    const policy = byName.get(props.throttler.name ?? 'default');
    if (!policy) return true;
    const scope = this.reflector.get<RateLimitScope | undefined>(RATE_LIMIT_SCOPE, context.getHandler());
    if (policy.scope && policy.scope !== scope) return true;

    const request = context.switchToHttp().getRequest<AuthenticatedRequest>();
    const reply = context.switchToHttp().getResponse<FastifyReply>();
    const tracker = this.trackerFor(policy, request);
    if (tracker === null) return true;
    const key = `${policy.name}:${createHash('sha256').update(tracker).digest('base64url')}`;
    const windowSeconds = Math.round(ttl / 1000);

    let record;
    try {
      record = await this.storageService.increment(key, ttl, limit, ttl, policy.name);
    } catch (err) {
      if (!policy.failClosed) return true;
      this.log.warn(`rate-limit store unavailable, refusing ${policy.name}: ${String(err)}`);
      throw new DomainError('RATE_LIMITED', 'Temporarily unable to accept this request; retry shortly.', {
        headers: { 'Retry-After': '5' },
      });
    }
    const remaining = Math.max(0, limit - record.totalHits);
    appendHeader(reply, 'RateLimit-Policy', `"${policy.name}";q=${limit};w=${windowSeconds}`);
    appendHeader(reply, 'RateLimit', `"${policy.name}";r=${remaining};t=${record.timeToExpire}`);
    if (record.isBlocked) {
      throw new DomainError('RATE_LIMITED', 'Too many requests; retry later.', {
        headers: { 'Retry-After': String(Math.max(1, record.timeToBlockExpire)) },
      });
    }
    return true;
  }

  private trackerFor(policy: RateLimitPolicy, request: AuthenticatedRequest): string | null {
    switch (policy.tracker) {
      case 'ip':
        return `ip:${request.ip}`;
      case 'user':
        return request.user ? `user:${request.user.userId}` : `ip:${request.ip}`;
      case 'account': {
        const email = (request.body as { email?: unknown } | undefined)?.email;
        return typeof email === 'string' ? `account:${email.trim().toLowerCase()}` : null;
      }
    }
  }
}

function appendHeader(reply: FastifyReply, name: string, value: string): void {
  const existing = reply.getHeader(name);
  void reply.header(name, existing ? `${String(existing)}, ${value}` : value);
}
