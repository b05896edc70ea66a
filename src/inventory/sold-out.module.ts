import { Global, Module } from '@nestjs/common';
import { SoldOutMarks } from './sold-out';

/**
 * The shared sold-out knowledge: one instance per process, available to every module that
 * raises availability (releases, stock adjustments) or reads it (the checkout's fast path).
 */
@Global()
@Module({
  providers: [SoldOutMarks],
  exports: [SoldOutMarks],
})
export class SoldOutModule {}
