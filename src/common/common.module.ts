import { Global, Module } from '@nestjs/common';
import { IdGenerator } from './ids';
import { Clock } from './time/clock';

/** The side effects every feature injects instead of calling them: the clock and new ids. */
@Global()
@Module({
  providers: [Clock, IdGenerator],
  exports: [Clock, IdGenerator],
})
export class CommonModule {}
