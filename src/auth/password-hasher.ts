import { Inject, Injectable, OnModuleInit, Optional } from '@nestjs/common';
import { Algorithm, hash, verify } from '@node-rs/argon2';
import { SecureRandom } from './secure-random';

export interface Argon2Params {
  /** KiB */
  memoryCost: number;
  timeCost: number;
  parallelism: number;
}

/** OWASP's minimum for argon2id: m = 19 MiB, t = 2, p = 1. Nothing below is accepted. */
export const OWASP_MINIMUM: Argon2Params = { memoryCost: 19_456, timeCost: 2, parallelism: 1 };

/** What new hashes are made with. Raise these and existing hashes are upgraded at next login. */
export const ARGON2_PARAMS: Argon2Params = OWASP_MINIMUM;

/** Overrides ARGON2_PARAMS (tests, or a deployment that can afford more). */
export const PASSWORD_HASH_PARAMS = Symbol('PASSWORD_HASH_PARAMS');

/** Reads m, t and p from an argon2id PHC string `$argon2id$v=19$m=…,t=…,p=…$salt$hash`. */
export function parseParams(phc: string): { m: number; t: number; p: number } | null {
  const match = /^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$/.exec(phc);
  return match ? { m: Number(match[1]), t: Number(match[2]), p: Number(match[3]) } : null;
}

/** argon2id password hashing (@node-rs/argon2); the PHC string records its parameters. */
@Injectable()
export class PasswordHasher implements OnModuleInit {
  readonly params: Argon2Params;
  /** A real hash of a random secret, verified against for unknown emails (equal timing). */
  private dummy?: Promise<string>;

  constructor(
    private readonly random: SecureRandom,
    @Optional() @Inject(PASSWORD_HASH_PARAMS) params?: Argon2Params,
  ) {
    this.params = params ?? ARGON2_PARAMS;
    if (
      this.params.memoryCost < OWASP_MINIMUM.memoryCost ||
      this.params.timeCost < OWASP_MINIMUM.timeCost ||
      this.params.parallelism < OWASP_MINIMUM.parallelism
    ) {
      throw new Error('argon2id parameters below the OWASP minimum (m=19456, t=2, p=1)');
    }
  }

  onModuleInit(): void {
    // made at boot, so the first unknown-email login is not slower than the others
    this.dummy ??= this.hash(this.random.token(32));
  }

  hash(password: string): Promise<string> {
    return hash(password, { algorithm: Algorithm.Argon2id, ...this.params });
  }

  /** False for a wrong password and for a malformed stored hash (never throws). */
  async verify(phc: string, password: string): Promise<boolean> {
    try {
      return await verify(phc, password);
    } catch {
      return false;
    }
  }

  /** Spends the same work as a real verification, then fails. */
  async verifyDummy(password: string): Promise<false> {
    this.dummy ??= this.hash(this.random.token(32));
    await this.verify(await this.dummy, password);
    return false;
  }

  /** True when the stored hash is not argon2id v19 or was made with weaker parameters. */
  needsRehash(phc: string): boolean {
    const p = parseParams(phc);
    return (
      !p ||
      p.m < this.params.memoryCost ||
      p.t < this.params.timeCost ||
      p.p < this.params.parallelism
    );
  }
}
