import { Injectable } from '@nestjs/common';
import { createHash, randomUUID } from 'node:crypto';

/** New ids for rows we create, injectable so tests can make them predictable. */
@Injectable()
export class IdGenerator {
  uuid(): string {
    return randomUUID();
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const CANONICAL_UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Any 8-4-4-4-12 hex UUID, either case (PostgreSQL's uuid input takes it as it is). */
export function isUuid(value: unknown): value is string {
  return typeof value === 'string' && UUID.test(value);
}

/** A UUID as this service writes and prints them: lower case, with hyphens. */
export function isCanonicalUuid(value: unknown): value is string {
  return typeof value === 'string' && CANONICAL_UUID.test(value);
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
