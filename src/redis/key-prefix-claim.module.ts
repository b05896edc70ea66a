import { Global, Module } from '@nestjs/common';
import { RedisCredentialsCheck } from './credentials-check';
import { RedisDatabaseCheck } from './database-index';
import { EvictionPolicyCheck } from './eviction-policy';
import { KeyPrefixClaim } from './key-prefix-claim';

/**
 * The boot checks of the Redis a deployment runs on, API and worker: REDIS_URL's credentials
 * accepted (credentials-check.ts, at module init), REDIS_URL's database really
 * selected (database-index.ts, at module init: before the others write), REDIS_KEY_PREFIX claimed
 * for this process's database (key-prefix-claim.ts), and a Redis that never evicts
 * (eviction-policy.ts).
 */
@Global()
@Module({
  providers: [RedisCredentialsCheck, RedisDatabaseCheck, KeyPrefixClaim, EvictionPolicyCheck],
  exports: [KeyPrefixClaim],
})
export class KeyPrefixClaimModule {}
