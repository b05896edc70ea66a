import helmet from '@fastify/helmet';
import type { FastifyCorsOptions } from '@fastify/cors';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import type { AppConfig } from '../../config/config';

/** Response headers a browser client may read (everything else stays hidden from scripts). */
export const CORS_EXPOSED_HEADERS = [
  'X-Request-Id',
  'Idempotent-Replayed',
  'Retry-After',
  'RateLimit',
  'RateLimit-Policy',
  'Location',
];

/** Request headers a browser client may send cross-origin. */
export const CORS_ALLOWED_HEADERS = ['Authorization', 'Content-Type', 'Idempotency-Key', 'X-Request-Id'];

/**
 * CORS for browser clients on other origins. Bearer tokens, not cookies: no credentials, so an
 * allowed origin cannot ride a user's ambient session. `*` only when CORS_ORIGINS says so (or
 * by default in development); outside development the default list is empty (no origin).
 */
export function corsOptions(config: AppConfig): FastifyCorsOptions {
  return {
    origin: config.corsOrigins === '*' ? '*' : config.corsOrigins,
    methods: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'],
    allowedHeaders: CORS_ALLOWED_HEADERS,
    exposedHeaders: CORS_EXPOSED_HEADERS,
    credentials: false,
    maxAge: 600,
  };
}

/**
 * Content-Security-Policy: nothing but this origin, which is what Swagger UI at /docs needs —
 * @nestjs/swagger serves its scripts (bundle, preset and the initializer swagger-ui-init.js) as
 * files, so no inline script is allowed; only inline styles (its page and React's style
 * attributes) and data: images (its CSS icons). JSON answers carry the same header, harmlessly.
 * No upgrade-insecure-requests: it would send the UI's plain-HTTP calls (local runs, TLS ended
 * at a proxy) to an https:// port nobody listens on.
 */
export const CONTENT_SECURITY_POLICY = {
  useDefaults: false,
  directives: {
    defaultSrc: ["'self'"],
    baseUri: ["'self'"],
    connectSrc: ["'self'"],
    fontSrc: ["'self'", 'data:'],
    formAction: ["'self'"],
    frameAncestors: ["'none'"],
    imgSrc: ["'self'", 'data:'],
    objectSrc: ["'none'"],
    scriptSrc: ["'self'"],
    scriptSrcAttr: ["'none'"],
    styleSrc: ["'self'", "'unsafe-inline'"],
  },
};

/**
 * CORS and the helmet security headers, as Fastify request hooks. Call before any other
 * request hook that may answer on its own (the catalog cache's fast path): hooks run in the
 * order they are added, so those answers carry the headers too.
 */
export async function registerBrowserSecurity(
  app: NestFastifyApplication,
  config: AppConfig,
): Promise<void> {
  // Nest runs the CORS request hook ahead of its middleware (preflights answered first).
  app.enableCors(corsOptions(config));
  await app.register(helmet, {
    contentSecurityPolicy: CONTENT_SECURITY_POLICY,
    // An API answer is never framed: frame-ancestors 'none' above, X-Frame-Options for old browsers
    frameguard: { action: 'deny' },
  });
}
