import 'reflect-metadata';
import { Body, Controller, Get, HttpCode, Module, Post } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, NestFastifyApplication } from '@nestjs/platform-fastify';

/**
 * The floor for benchmarks: a bare Nest + Fastify app with small JSON routes — a GET (catalog
 * reads) and a POST that parses a JSON body and answers 409 (the sold-out checkout's refusal).
 */
@Controller()
class PingController {
  @Get('ping')
  ping(): { ok: true; service: string } {
    return { ok: true, service: 'baseline' };
  }

  @Post('refuse')
  @HttpCode(409)
  refuse(@Body() body: unknown): { code: string; received: boolean } {
    return { code: 'INSUFFICIENT_STOCK', received: body !== undefined };
  }
}

@Module({ controllers: [PingController] })
class BaselineModule {}

async function main(): Promise<void> {
  const app = await NestFactory.create<NestFastifyApplication>(
    BaselineModule,
    new FastifyAdapter(),
    {
      logger: false,
    },
  );
  await app.listen({ port: Number(process.env.PORT), host: '127.0.0.1' });
  process.once('SIGTERM', () => void app.close().then(() => process.exit(0)));
}

void main();
