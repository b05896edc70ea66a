import { Injectable } from '@nestjs/common';

/**
 * Demo data for development: each feature contributes its part here, idempotently
 * (running the seed twice changes nothing). Returns lines to print (e.g. demo credentials).
 */
@Injectable()
export class DemoSeeder {
  async run(): Promise<string[]> {
    return ['nothing to seed yet'];
  }
}
