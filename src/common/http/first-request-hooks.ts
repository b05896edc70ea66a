import type { FastifyAdapter } from '@nestjs/platform-fastify';
import type { FastifyReply, FastifyRequest } from 'fastify';

/** A request hook that either answers the request itself or calls `done()` to let it through. */
export type FirstRequestHook = (
  request: FastifyRequest,
  reply: FastifyReply,
  done: (err?: Error) => void,
) => void;

/**
 * Installs the hooks as the adapter's first request hook (`setOnRequestHook`): the one hook
 * that runs ahead of Nest's middleware (the request logger) and of every hook added with
 * `fastify.addHook` — where answers that must stay cheap are made (catalog cache hits, the
 * sold-out checkout refusals). The adapter keeps one such hook; these run in turn, each
 * letting through what it does not answer.
 */
export function setFirstRequestHooks(adapter: FastifyAdapter, hooks: FirstRequestHook[]): void {
  if (hooks.length === 0) return;
  let chain = hooks[hooks.length - 1];
  for (let i = hooks.length - 2; i >= 0; i--) {
    const hook = hooks[i];
    const next = chain;
    chain = (request, reply, done) =>
      hook(request, reply, (err) => (err ? done(err) : next(request, reply, done)));
  }
  adapter.setOnRequestHook(chain);
}
