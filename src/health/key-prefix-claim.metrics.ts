import { Injectable, OnModuleInit } from '@nestjs/common';
import { MetricsService } from '../metrics/metrics.service';
import { KeyPrefixClaim } from '../redis/key-prefix-claim';

const STATE_VALUE = { waiting: 0, held: 1, stopped: 2 } as const;

/**
 * `redis_key_prefix_claim_state`: whether this process holds REDIS_KEY_PREFIX for its database
 * (KeyPrefixClaim). A worker whose Redis was down at boot runs no job until it does: 0 on a
 * dashboard says why its queues stand still, where only its log said so.
 */
@Injectable()
export class KeyPrefixClaimMetrics implements OnModuleInit {
  constructor(
    private readonly metrics: MetricsService,
    private readonly claim: KeyPrefixClaim,
  ) {}

  onModuleInit(): void {
    const claim = this.claim;
    this.metrics.gauge(
      'redis_key_prefix_claim_state',
      'REDIS_KEY_PREFIX claimed for this database: 0 not yet (the worker runs no job), 1 held, 2 lost or stopping',
      [],
      function () {
        this.set(STATE_VALUE[claim.state]);
      },
    );
  }
}
