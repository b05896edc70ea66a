import { Global, Module } from '@nestjs/common';
import { IdGenerator } from './ids';
import { CursorCodec } from './pagination/cursor';
import { Clock } from './time/clock';

/**
 * The side effects every feature injects instead of calling them (the clock and new ids), and the
 * listings' sealed cursors.
 */
@Global()
@Module({
  providers: [Clock, IdGenerator, CursorCodec],
  exports: [Clock, IdGenerator, CursorCodec],
})
export class CommonModule {}
