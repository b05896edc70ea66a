import { ConfigError, loadConfig } from './config';

describe('loadConfig', () => {
  it('applies documented defaults to an empty environment', () => {
    const c = loadConfig({});
    expect(c.http.port).toBe(3000);
    expect(c.reservationTtlSeconds).toBe(900);
    expect(c.rateLimitEnabled).toBe(true);
    expect(c.stripe.secretKey).toBeUndefined();
  });

  it('names the variable that is invalid', () => {
    expect(() => loadConfig({ PORT: 'eighty' })).toThrow(/PORT/);
    expect(() => loadConfig({ DATABASE_URL: 'mysql://x' })).toThrow(/DATABASE_URL/);
    expect(() => loadConfig({ RATE_LIMIT_ENABLED: 'maybe' })).toThrow(/RATE_LIMIT_ENABLED/);
  });

  it('refuses to start in production without JWT_SECRET', () => {
    expect(() => loadConfig({ NODE_ENV: 'production' })).toThrow(ConfigError);
    expect(() => loadConfig({ NODE_ENV: 'production' })).toThrow(/JWT_SECRET/);
  });

  it('accepts production with a strong secret', () => {
    const c = loadConfig({
      NODE_ENV: 'production',
      JWT_SECRET: 'x'.repeat(40),
      STORAGE_SIGNING_SECRET: 'y'.repeat(32),
    });
    expect(c.isProduction).toBe(true);
  });

  it('treats empty strings as unset', () => {
    expect(loadConfig({ STRIPE_SECRET_KEY: '' }).stripe.secretKey).toBeUndefined();
  });

  it('switches throttling off with RATE_LIMIT_ENABLED=false', () => {
    expect(loadConfig({ RATE_LIMIT_ENABLED: 'false' }).rateLimitEnabled).toBe(false);
  });
});
