import { Injectable } from '@nestjs/common';
import { randomUUID } from 'node:crypto';

/** New ids for rows we create, injectable so tests can make them predictable. */
@Injectable()
export class IdGenerator {
  uuid(): string {
    return randomUUID();
  }
}
