import { Module } from '@nestjs/common';
import { StockReservationRepository } from './stock-reservation.repository';
import { StockReservationService } from './stock-reservation.service';

@Module({
  providers: [StockReservationRepository, StockReservationService],
  exports: [StockReservationService],
})
export class StockReservationModule {}
