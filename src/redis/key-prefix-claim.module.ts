import { Global, Module } from '@nestjs/common';
import { EvictionPolicyCheck } from './eviction-policy';
import { KeyPrefixClaim } from './key-prefix-claim';

/**
 * The boot checks of the Redis a deployment runs on, API and worker: REDIS_KEY_PREFIX claimed for
 * this process's database (key-prefix-claim.ts), and a Redis that never evicts (eviction-policy.ts).
 */
@Global()
@Module({ providers: [KeyPrefixClaim, EvictionPolicyCheck], exports: [KeyPrefixClaim] })
export class KeyPrefixClaimModule {}
