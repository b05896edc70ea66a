import { tmpdir } from 'node:os';
import { join } from 'node:path';
// Every integration test file starts from the same quiet, deterministic environment.
// NODE_ENV=development explicitly: the suites use the simulated payment gateway, its dev-only
// confirm route and the built-in development secrets. Nothing else gets them: suites that
// prove so (test/security/) boot with NODE_ENV unset/test/production and their own secrets.
process.env.NODE_ENV = 'development';
// given explicitly, as a deployment must (outside development they have no default): suites that
// boot with another NODE_ENV reach the same local services
process.env.REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
process.env.LOG_LEVEL = process.env.TEST_LOG_LEVEL ?? 'silent';
process.env.RATE_LIMIT_ENABLED = process.env.RATE_LIMIT_ENABLED ?? 'false';
// the limits' Redis given 3 s, not production's 500 ms: on a loaded run (six files at once on two
// cores) a reply came past 500 ms, the store counted as unavailable, and a sign-in limit's 429 was
// a 503 (device-token, auth-rate-limits). The tests of a slow or silent Redis set 500.
process.env.RATE_LIMIT_STORE_TIMEOUT_MS = process.env.RATE_LIMIT_STORE_TIMEOUT_MS ?? '3000';
// Many apps and processes run at once: no Prometheus listeners unless a test asks for one.
process.env.METRICS_PORT = '0';
process.env.WORKER_METRICS_PORT = '0';
// per-customer purchase caps off, as throttling is: many tests buy a lot as one customer;
// test/security/purchase-limits.test.ts switches them on
process.env.PURCHASE_LIMIT_UNITS_PER_PRODUCT = process.env.PURCHASE_LIMIT_UNITS_PER_PRODUCT ?? '0';
process.env.PURCHASE_LIMIT_OPEN_ORDERS = process.env.PURCHASE_LIMIT_OPEN_ORDERS ?? '0';
process.env.PURCHASE_LIMIT_ABANDONED_PER_DAY = process.env.PURCHASE_LIMIT_ABANDONED_PER_DAY ?? '0';
// A developer's .env (README: copy .env.example) must not reach the processes tests spawn: the
// harness's environment is the whole configuration. test/e2e/env-file.test.ts opts back in.
process.env.ENV_FILE = '';
// nor a developer's shell's access-token key pair or verify-only key: suites sign with JWT_SECRET
// (or the built-in development key) unless they pass their own keys (test/security/jwt-key-pair.test.ts,
// test/security/jwt-key-rotation.test.ts)
delete process.env.JWT_PRIVATE_KEY;
delete process.env.JWT_PUBLIC_KEY;
delete process.env.JWT_VERIFY_ONLY_SECRET;
delete process.env.JWT_VERIFY_ONLY_PUBLIC_KEY;
// No mail server in tests: outgoing mail is written as .eml files, asked for explicitly (outside
// development a deployment without SMTP_URL refuses to boot unless MAIL_OUTBOX_DIR is set).
process.env.MAIL_OUTBOX_DIR =
  process.env.MAIL_OUTBOX_DIR ?? join(tmpdir(), `shop-test-mail-${process.pid}`);
