import { appendListHeader } from '../http/list-header';
import { ExecutionContext, Inject, Injectable, Logger } from '@nestjs/common';
import { ModuleRef, Reflector } from '@nestjs/core';
import { ExecutionContextHost } from '@nestjs/core/helpers/execution-context-host';
import {
  InjectThrottlerOptions,
  ThrottlerGuard,
  ThrottlerModuleOptions,
  ThrottlerRequest,
} from '@nestjs/throttler';
import type { ThrottlerStorageRecord } from '@nestjs/throttler/dist/throttler-storage-record.interface';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { RATE_LIMIT_SCOPE, RateLimitScope } from './rate-limit.decorator';
import { APP_CONFIG, AppConfig } from '../../config/config';
import { DomainError } from '../errors/domain-error';
import { quietly } from '../logging/command-log';
import {
  RATE_LIMIT_POLICIES,
  RateLimitPhase,
  RateLimitPolicy,
  appliesTo,
  counterKey,
  phaseOf,
  policyHeaderItem,
  stateHeaderItem,
  trackerFor,
} from './rate-limit.policies';
import { RedisThrottlerStorage } from './redis-throttler.storage';

/** What the per-user policies read: the access-token guard's principal, when it has set one. */
type RequestWithUser = FastifyRequest & {
  user?: { userId: string; sessionId?: string; role?: string };
};

const byName = new Map(RATE_LIMIT_POLICIES.map((p) => [p.name, p]));
const READS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** Set on a request whose limits were counted ahead of the guards (markRateLimitsCounted). */
const COUNTED = Symbol('rate limits counted');
/** The counters of a request's `unservedGivenBack` policies it was counted in. */
const GIVE_BACK_IF_UNSERVED = Symbol('rate limits given back if unserved');
/** The counters the guard's pass now running counted the request in (given back if refused). */
const COUNTED_THIS_PASS = Symbol('rate limits counted by this pass');
type CountedRequest = FastifyRequest & {
  [GIVE_BACK_IF_UNSERVED]?: string[];
  [COUNTED_THIS_PASS]?: string[];
};

/**
 * The request's limits were counted by running these guards early (the sold-out checkout's
 * front hook), and it then went the normal way: its guards let it through without counting it
 * twice (its RateLimit headers are already on the reply).
 */
export function markRateLimitsCounted(request: FastifyRequest): void {
  (request as FastifyRequest & { [COUNTED]?: true })[COUNTED] = true;
}

/**
 * Whether a request repeats a completed one whose stored answer will be replayed (provided by
 * IdempotencyModule under STORED_ANSWERS; absent — the worker's queue board — none is).
 */
export interface StoredAnswers {
  holdsAnswer(context: ExecutionContext): Promise<boolean>;
}
export const STORED_ANSWERS = Symbol('StoredAnswers');

/** Retry-After when the counters cannot be reached and a fail-closed policy refuses. */
const STORE_DOWN_RETRY_AFTER_SECONDS = 5;

/**
 * The refusal of a fail-closed limit whose counters cannot be reached (Redis down or too slow):
 * 503 SERVICE_UNAVAILABLE with Retry-After — the shop cannot serve it now. A 429 RATE_LIMITED
 * here told clients (and so the person) that they had tried too often.
 */
export const storeDown = (detail: string): DomainError =>
  new DomainError('SERVICE_UNAVAILABLE', detail, {
    headers: { 'Retry-After': String(STORE_DOWN_RETRY_AFTER_SECONDS) },
  });

/**
 * @nestjs/throttler with our named policies (rate-limit.policies.ts) and Redis counters.
 *
 * - The client IP is Fastify's `request.ip`: the socket address, or the X-Forwarded-For entry
 *   added by a proxy listed in TRUST_PROXY; a spoofed header from anyone else is ignored.
 * - Answers carry `RateLimit-Policy` / `RateLimit` (draft-ietf-httpapi-ratelimit-headers), one
 *   list item per policy that applied; a refusal is 429 RATE_LIMITED with Retry-After.
 * - Redis unreachable or stalled: fail-open policies let the request through, fail-closed ones
 *   (login, registration, password change) answer 503 SERVICE_UNAVAILABLE with Retry-After
 *   (storeDown). Never a 500; a request waits RATE_LIMIT_STORE_TIMEOUT_MS once at most, for its first policy
 *   that fails — the store is then not asked for a second (UNASKED_AFTER_FAILURE_MS) — besides a
 *   reconnect a fail-closed policy waits out (as long at most: connected).
 *
 * Registered twice as a global guard: ClientRateLimitGuard before the access-token guard (IP
 * and account policies) and UserRateLimitGuard after it (per-user policies).
 */
@Injectable()
abstract class RateLimitGuard extends ThrottlerGuard {
  private readonly log = new Logger('RateLimit');
  private storeDown = false;
  private storedAnswers: StoredAnswers | null | undefined;

  constructor(
    @InjectThrottlerOptions() options: ThrottlerModuleOptions,
    // explicit: the base class's own @InjectThrottlerStorage() (the in-memory store) would
    // otherwise be inherited for this parameter
    @Inject(RedisThrottlerStorage) private readonly counters: RedisThrottlerStorage,
    reflector: Reflector,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly moduleRef: ModuleRef,
  ) {
    super(options, counters, reflector);
  }

  protected abstract phase(): RateLimitPhase;

  protected override async shouldSkip(context: ExecutionContext): Promise<boolean> {
    if (!this.config.rateLimitEnabled || context.getType() !== 'http') return true;
    return (
      context.switchToHttp().getRequest<FastifyRequest & { [COUNTED]?: true }>()[COUNTED] === true
    );
  }

  /**
   * A request one policy refuses gives back the hits the pass's earlier route policies (those of
   * a scope: registration's, login's, …) counted: it was not served, and a counter it made afresh
   * would stay for its whole window — a host rotating the /64s of its /48 after the /48's
   * registrations were spent left each /64's hour-long `register-ip` counter per refusal, ~165 B
   * of a Redis that evicts nothing, at a thousand refusals a second (greedy-client review). The
   * refusing policy's own counter keeps its hit (a refusal counts where it is refused), and so do
   * the policies of every route (`default`, a client's requests a minute: given back, a flood of
   * refused logins never reached it, and was served on other routes all the while — review).
   */
  override async canActivate(context: ExecutionContext): Promise<boolean> {
    if (!this.config.rateLimitEnabled || context.getType() !== 'http') {
      return super.canActivate(context);
    }
    const request = context.switchToHttp().getRequest<CountedRequest>();
    const counted: string[] = [];
    request[COUNTED_THIS_PASS] = counted;
    try {
      return await super.canActivate(context);
    } catch (err) {
      if (counted.length > 0) {
        const unserved = request[GIVE_BACK_IF_UNSERVED];
        if (unserved) request[GIVE_BACK_IF_UNSERVED] = unserved.filter((k) => !counted.includes(k));
        await this.counters.giveBack(...counted);
      }
      throw err;
    } finally {
      request[COUNTED_THIS_PASS] = undefined;
    }
  }

  protected override async handleRequest(props: ThrottlerRequest): Promise<boolean> {
    const { context, limit, ttl } = props;
    const policy = byName.get(props.throttler.name ?? 'default');
    if (!policy || phaseOf(policy) !== this.phase()) return true;
    const scope = this.reflector.get<RateLimitScope | undefined>(
      RATE_LIMIT_SCOPE,
      context.getHandler(),
    );
    if (!appliesTo(policy, scope)) return true;
    const method = context.switchToHttp().getRequest<FastifyRequest>().method;
    if (policy.writesOnly && READS.has(method)) return true;

    const request = context.switchToHttp().getRequest<RequestWithUser>();
    const tracker = trackerFor(policy.tracker, {
      ip: request.ip,
      userId: request.user?.userId,
      sessionId: request.user?.sessionId,
      role: request.user?.role,
      body: request.body,
    });
    if (tracker === null) return true;
    const key = counterKey(policy.name, tracker);

    const reply = context.switchToHttp().getResponse<FastifyReply>();
    // a request that needs room left after it (policy.headroom) is refused that much earlier
    const headroom =
      policy.headroom && policy.headroom.scope === scope ? policy.headroom.requests : 0;
    const allowed = limit - headroom;
    const record = await this.count(policy, key, ttl, allowed);
    if (!record) return true; // store unavailable, fail-open policy
    if (
      record.isBlocked &&
      record.totalHits <= 2 * limit &&
      (await this.repeatsAnswered(context))
    ) {
      // a retry of a completed request (its answer lost on the way): the interceptor replays the
      // stored answer — API.md's "after completion", not a 429. Counted all the same, so replays
      // get one more window's worth at most (a database read each), then are refused like the
      // rest — but for the room a policy keeps (headroom: the day's writes that pay for or cancel
      // the order), which a replay writing nothing must not spend; the order's own per-minute
      // policy still counts it
      if (headroom > 0) await this.counters.giveBack(key);
      else if (policy.scope) (request as unknown as CountedRequest)[COUNTED_THIS_PASS]?.push(key);
      return true;
    }
    if (!record.isBlocked) {
      if (policy.scope) (request as unknown as CountedRequest)[COUNTED_THIS_PASS]?.push(key);
      if (policy.unservedGivenBack) {
        ((request as unknown as CountedRequest)[GIVE_BACK_IF_UNSERVED] ??= []).push(key);
      }
    }
    if (record.isBlocked && headroom > 0) {
      // refused for the room it needed: the refusal does not spend that room (a customer
      // clicking "order" again keeps the writes that pay for or cancel the order placed)
      await this.counters.giveBack(key);
      record.totalHits--;
    }

    // a counter keyed by what anyone may name (an email asked for at registration) is shown only
    // on the refusal it causes: its remaining count and reset told any caller how many attempts
    // others had made at that address in the hour, and when the first was
    if (policy.tracker !== 'account' || record.isBlocked) {
      appendListHeader(reply, 'RateLimit-Policy', policyHeaderItem(policy.name, limit, ttl / 1000));
      appendListHeader(
        reply,
        'RateLimit',
        stateHeaderItem(policy.name, allowed - record.totalHits, record.timeToExpire),
      );
    }
    if (record.isBlocked) {
      // past the window's first refusal, the answer writes no log line (a flood's 429s each wrote
      // one, as fast as the client sent them)
      if (record.totalHits > allowed + 1) quietly(request);
      throw new DomainError('RATE_LIMITED', 'Too many requests; retry later.', {
        headers: { 'Retry-After': String(Math.max(1, record.timeToBlockExpire)) },
      });
    }
    return true;
  }

  /**
   * After a 503 (the caller's hook judges the answer): the request gives back its hits of the
   * `unservedGivenBack` policies (best effort; a Redis that cannot take it leaves the hit counted).
   */
  async giveBackUnserved(request: FastifyRequest): Promise<void> {
    const keys = (request as CountedRequest)[GIVE_BACK_IF_UNSERVED];
    if (!keys) return;
    (request as CountedRequest)[GIVE_BACK_IF_UNSERVED] = undefined;
    for (const key of keys) await this.counters.giveBack(key).catch(() => undefined);
  }

  /** Per-user policies only: the principal the idempotency record is scoped to is known. */
  private async repeatsAnswered(context: ExecutionContext): Promise<boolean> {
    if (this.phase() !== 'after-auth') return false;
    if (this.storedAnswers === undefined) {
      try {
        this.storedAnswers = this.moduleRef.get<StoredAnswers>(STORED_ANSWERS, { strict: false });
      } catch {
        this.storedAnswers = null;
      }
    }
    return this.storedAnswers !== null && this.storedAnswers.holdsAnswer(context);
  }

  /**
   * The policy's counter after this hit; null when the store is unavailable and it fails open.
   * A fail-closed policy refuses then: 503 with Retry-After (storeDown).
   */
  private async count(
    policy: RateLimitPolicy,
    key: string,
    ttl: number,
    limit: number,
  ): Promise<ThrottlerStorageRecord | null> {
    try {
      // a fail-closed policy waits out a reconnect (a blip) rather than refusing into its gap
      if (policy.failClosed) await this.counters.connected();
      const record = await this.storageService.increment(key, ttl, limit, ttl, policy.name);
      if (this.storeDown) this.log.log('rate-limit store reachable again');
      this.storeDown = false;
      return record;
    } catch (err) {
      if (!this.storeDown) {
        this.log.warn(
          `${String(err)}: fail-closed policies refuse, the others let requests through`,
        );
      }
      this.storeDown = true;
      if (!policy.failClosed) return null;
      throw storeDown('Temporarily unable to accept this request; retry shortly.');
    }
  }
}

/** IP and account policies: runs before authentication, so every request counts. */
@Injectable()
export class ClientRateLimitGuard extends RateLimitGuard {
  protected phase(): RateLimitPhase {
    return 'before-auth';
  }
}

/** Per-user policies: runs after the access-token guard has put the principal on the request. */
@Injectable()
export class UserRateLimitGuard extends RateLimitGuard {
  protected phase(): RateLimitPhase {
    return 'after-auth';
  }
}

/** What a request served outside Nest is counted as: a route of no scope. */
class ServedOutsideNest {
  static request(): void {}
}

/** Counts a request and throws its refusal (countOutsideNest). */
export type CountRequest = (request: FastifyRequest, reply: FastifyReply) => Promise<void>;

/**
 * Counts, by the per-client policies, a request no Nest route serves — Swagger UI and its
 * document (not a CORS preflight: registerBrowserSecurity says why) — as the global guard counts
 * a route of no scope: `default`, in Redis. Throws their refusal (429 RATE_LIMITED, its RateLimit headers on the
 * reply) for the caller to send; lets it through when the counters cannot be reached (fail open),
 * or with rate limiting off. Those requests were counted by nothing: one client pulled the 290 KB
 * document 550–590 times a second (~160 MB/s out, ~0.9 core; cost review).
 */
export function countOutsideNest(guard: ClientRateLimitGuard): CountRequest {
  return async (request, reply) => {
    await guard.canActivate(
      new ExecutionContextHost(
        [request, reply, undefined],
        ServedOutsideNest,
        ServedOutsideNest.request,
      ),
    );
  };
}
