import { Module } from '@nestjs/common';
import { AuthModule } from '../auth/auth.module';
import { CatalogModule } from '../catalog/catalog.module';
import { DemoSeeder } from './demo.seeder';

@Module({ imports: [AuthModule, CatalogModule], providers: [DemoSeeder], exports: [DemoSeeder] })
export class SeedModule {}
