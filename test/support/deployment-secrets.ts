import { randomBytes } from 'node:crypto';

/**
 * The object store's address (required outside development, no secret) and real (random) secrets for a non-development instance, but for its access-token key (JWT_SECRET
 * or a key pair, each suite its own). The Stripe key is a test one no suite reaches (its API URL
 * answers nothing), allowed outside development by STRIPE_TEST_MODE.
 */
export function deploymentSecrets(): Record<string, string> {
  return {
    STORAGE_ENDPOINT: 'https://storage.shop.example.test',
    STORAGE_ACCESS_KEY_ID: 'shop-images-writer',
    STORAGE_SECRET_ACCESS_KEY: randomBytes(20).toString('hex'),
    STORAGE_WEBHOOK_TOKEN: randomBytes(16).toString('hex'),
    STRIPE_SECRET_KEY: 'sk_test_security_suite_unused',
    STRIPE_TEST_MODE: 'true',
    STRIPE_WEBHOOK_SECRET: `whsec_${randomBytes(16).toString('hex')}`,
    STRIPE_API_URL: 'http://127.0.0.1:9',
  };
}
