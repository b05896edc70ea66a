import { Module } from '@nestjs/common';
import { SoldOutModule } from './sold-out.module';
import { StockReservationRepository } from './stock-reservation.repository';
import { StockReservationService } from './stock-reservation.service';

@Module({
  imports: [SoldOutModule],
  providers: [StockReservationRepository, StockReservationService],
  exports: [StockReservationService, SoldOutModule],
})
export class StockReservationModule {}
