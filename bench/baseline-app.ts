import 'reflect-metadata';
import { Controller, Get, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, NestFastifyApplication } from '@nestjs/platform-fastify';

/** The floor for read benchmarks: a bare Nest + Fastify app with one small JSON route. */
@Controller()
class PingController {
  @Get('ping')
  ping(): { ok: true; service: string } {
    return { ok: true, service: 'baseline' };
  }
}

@Module({ controllers: [PingController] })
class BaselineModule {}

async function main(): Promise<void> {
  const app = await NestFactory.create<NestFastifyApplication>(BaselineModule, new FastifyAdapter(), {
    logger: false,
  });
  await app.listen({ port: Number(process.env.PORT), host: '127.0.0.1' });
  process.once('SIGTERM', () => void app.close().then(() => process.exit(0)));
}

void main();
