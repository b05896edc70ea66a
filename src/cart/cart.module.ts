import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { ProductsModule } from '../catalog/products.module';
import { CartController } from './cart.controller';
import { CartRepository } from './cart.repository';
import { CartItemEntity } from './entities/cart-item.entity';
import { CartService } from './cart.service';

@Module({
  imports: [TypeOrmModule.forFeature([CartItemEntity]), ProductsModule],
  controllers: [CartController],
  providers: [CartRepository, CartService],
  exports: [CartRepository],
})
export class CartModule {}
