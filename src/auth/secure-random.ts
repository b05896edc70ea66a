import { Injectable } from '@nestjs/common';
import { randomBytes } from 'node:crypto';

/** Secrets from the operating system's CSPRNG; injectable so tests can make them predictable. */
@Injectable()
export class SecureRandom {
  /** `bytes` random bytes, base64url-encoded (32 bytes = 256 bits = 43 characters). */
  token(bytes: number): string {
    return randomBytes(bytes).toString('base64url');
  }
}
