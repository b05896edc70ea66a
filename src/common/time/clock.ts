import { Injectable } from '@nestjs/common';

/** The current time, injectable so tests can move it. Business code never calls Date.now(). */
@Injectable()
export class Clock {
  now(): Date {
    return new Date();
  }
}
