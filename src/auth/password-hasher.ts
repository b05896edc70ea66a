import { Injectable } from '@nestjs/common';
import { Algorithm, hash, verify } from '@node-rs/argon2';

/** argon2id at OWASP's minimum or above: m = 19 MiB, t = 2, p = 1. */
export const ARGON2_PARAMS = { memoryCost: 19_456, timeCost: 2, parallelism: 1 } as const;

/** Reads m, t and p from a PHC string `$argon2id$v=19$m=…,t=…,p=…$salt$hash`. */
export function parseParams(phc: string): { m: number; t: number; p: number } | null {
  const match = /^\$argon2id\$v=\d+\$m=(\d+),t=(\d+),p=(\d+)\$/.exec(phc);
  return match ? { m: Number(match[1]), t: Number(match[2]), p: Number(match[3]) } : null;
}

@Injectable()
export class PasswordHasher {
  /** A real hash of a random password, verified against for unknown emails (equal timing). */
  private dummy?: Promise<string>;

  hash(password: string): Promise<string> {
    return hash(password, { algorithm: Algorithm.Argon2id, ...ARGON2_PARAMS });
  }

  async verify(phc: string, password: string): Promise<boolean> {
    try {
      return await verify(phc, password);
    } catch {
      return false;
    }
  }

  /** Spends the same work as a real verification, then fails. */
  async verifyDummy(password: string): Promise<false> {
    this.dummy ??= this.hash(`dummy-${Math.random()}`);
    await this.verify(await this.dummy, password);
    return false;
  }

  /** True when the stored hash was made with weaker parameters than today's. */
  needsRehash(phc: string): boolean {
    const p = parseParams(phc);
    return (
      !p ||
      p.m < ARGON2_PARAMS.memoryCost ||
      p.t < ARGON2_PARAMS.timeCost ||
      p.p < ARGON2_PARAMS.parallelism
    );
  }
}
