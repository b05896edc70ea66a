// Every integration test file starts from the same quiet, deterministic environment.
process.env.NODE_ENV = 'test';
process.env.LOG_LEVEL = process.env.TEST_LOG_LEVEL ?? 'silent';
process.env.RATE_LIMIT_ENABLED = process.env.RATE_LIMIT_ENABLED ?? 'false';
// per-customer purchase caps off, as throttling is: many tests buy a lot as one customer;
// test/security/purchase-limits.test.ts switches them on
process.env.PURCHASE_LIMIT_UNITS_PER_PRODUCT = process.env.PURCHASE_LIMIT_UNITS_PER_PRODUCT ?? '0';
process.env.PURCHASE_LIMIT_OPEN_ORDERS = process.env.PURCHASE_LIMIT_OPEN_ORDERS ?? '0';
