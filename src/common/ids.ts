import { Injectable } from '@nestjs/common';
import { createHash, randomUUID } from 'node:crypto';

/** New ids for rows we create, injectable so tests can make them predictable. */
@Injectable()
export class IdGenerator {
  uuid(): string {
    return randomUUID();
  }
}

/** A name-based UUID (RFC 9562 version 5 over a fixed namespace): the same name, the same id. */
export function uuidFromName(name: string): string {
  const NAMESPACE = Buffer.from('6f1c1e2ab5d14f0c9a3e51c7d2b0e8a4', 'hex');
  const h = createHash('sha1').update(NAMESPACE).update(name).digest();
  h[6] = (h[6] & 0x0f) | 0x50;
  h[8] = (h[8] & 0x3f) | 0x80;
  const hex = h.subarray(0, 16).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
