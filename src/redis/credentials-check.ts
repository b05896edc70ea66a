import { Inject, Injectable, OnModuleInit } from '@nestjs/common';
import type Redis from 'ioredis';
import { EXIT_CONFIG } from '../config/exit-codes';
import { BOOT_CONNECT_WAIT_MS } from './boot-wait';
import { refusedSignIn } from './sign-in-refusal';
import { whenConnected } from './when-connected';
import { REDIS } from './redis.module';

/** REDIS_URL's credentials refused by Redis at boot (exit code EXIT_CONFIG). */
class RedisCredentialsRefused extends Error {
  readonly exitCode = EXIT_CONFIG;

  constructor(reply: string) {
    super(
      `REDIS_URL: Redis refused this process's credentials (it answered "${reply}"): ` +
        'give REDIS_URL the user and password the server has (redis://<user>:<password>@host, or redis://:<password>@host for requirepass; after a rotation, the new password)',
    );
  }
}

/**
 * A REDIS_URL whose credentials Redis refuses (WRONGPASS, NOAUTH) stops the boot (API, worker,
 * the commands that load the application), naming REDIS_URL and Redis's reply, never the
 * password, at module init (before the other Redis checks ask and the prefix claim writes). It
 * booted: readiness said "no answer within 1000 ms (Redis reconnecting)", and nothing in the log
 * said why (the shared client's errors are the health checks' to report). As a refused database
 * index does (database-index.ts), in development too. A Redis that does not answer at boot is no
 * refusal (the API serves without it); credentials refused later, while the process runs (a
 * password rotated on the server), do not stop it: RedisHealthIndicator logs them and readiness
 * says so.
 */
@Injectable()
export class RedisCredentialsCheck implements OnModuleInit {
  constructor(@Inject(REDIS) private readonly redis: Redis) {}

  async onModuleInit(): Promise<void> {
    let stop = (): void => undefined;
    // connected, refused, or not answering for the boot's allowance: whichever comes first
    const refused = new Promise<void>((resolve) => {
      const listener = () => {
        if (refusedSignIn(this.redis)) resolve();
      };
      this.redis.on('error', listener);
      stop = () => this.redis.off('error', listener);
    });
    try {
      if (!refusedSignIn(this.redis))
        await Promise.race([whenConnected(this.redis, BOOT_CONNECT_WAIT_MS), refused]);
    } finally {
      stop();
    }
    const reply = refusedSignIn(this.redis);
    if (reply) throw new RedisCredentialsRefused(reply);
  }
}
