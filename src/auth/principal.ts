import { ExecutionContext, createParamDecorator } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import type { Permission, Role } from './permissions';

/** Who is calling: set on the request by the access-token guard. */
export interface Principal {
  userId: string;
  email: string;
  role: Role;
  permissions: readonly Permission[];
  /** The session (refresh-token family) of the access token, where one was presented. */
  sessionId?: string;
}

export type AuthenticatedRequest = FastifyRequest & { user?: Principal };

/** Injects the authenticated principal into a controller method. */
export const CurrentPrincipal = createParamDecorator(
  (_data: unknown, ctx: ExecutionContext): Principal | undefined =>
    ctx.switchToHttp().getRequest<AuthenticatedRequest>().user,
);
