import { CanActivate, ExecutionContext, Injectable } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import { ImagesService } from './images.service';

/**
 * Checks the object store's bearer token (400 WEBHOOK_SIGNATURE_INVALID) as a guard, so it runs
 * before every interceptor: a caller without the token never reaches the idempotency
 * interceptor's transaction, whatever headers it sends.
 */
@Injectable()
export class StorageTokenGuard implements CanActivate {
  constructor(private readonly images: ImagesService) {}

  canActivate(context: ExecutionContext): boolean {
    const { authorization } = context.switchToHttp().getRequest<FastifyRequest>().headers;
    this.images.checkToken(authorization);
    return true;
  }
}
