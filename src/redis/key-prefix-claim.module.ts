import { Global, Module } from '@nestjs/common';
import { KeyPrefixClaim } from './key-prefix-claim';

/** REDIS_KEY_PREFIX claimed for this process's database (key-prefix-claim.ts), API and worker. */
@Global()
@Module({ providers: [KeyPrefixClaim], exports: [KeyPrefixClaim] })
export class KeyPrefixClaimModule {}
