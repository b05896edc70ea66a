// Every integration test file starts from the same quiet, deterministic environment.
process.env.NODE_ENV = 'test';
process.env.LOG_LEVEL = process.env.TEST_LOG_LEVEL ?? 'silent';
process.env.RATE_LIMIT_ENABLED = process.env.RATE_LIMIT_ENABLED ?? 'false';
// Many apps and processes run at once: no Prometheus listeners unless a test asks for one.
process.env.METRICS_PORT = '0';
process.env.WORKER_METRICS_PORT = '0';
