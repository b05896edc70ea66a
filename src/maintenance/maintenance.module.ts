import { Module } from '@nestjs/common';
import { AuthModule } from '../auth/auth.module';
import { IdempotencyModule } from '../idempotency/idempotency.module';
import { MaintenanceService } from './maintenance.service';

/** Housekeeping jobs (worker role). */
@Module({
  imports: [IdempotencyModule, AuthModule],
  providers: [MaintenanceService],
})
export class MaintenanceModule {}
