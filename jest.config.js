// Unit specs live next to their source (src/**/*.spec.ts); integration and e2e suites in test/.
// the same transpile options as scripts/ts-register.js (running sources outside jest)
const swc = ['@swc/jest', require('./scripts/swc-options')];

// test/support/test-environment.ts: node's, plus each file's AsyncLocalStorages disabled when it
// is done (left enabled, they piled up in a worker and slowed every later file)
module.exports = {
  testEnvironment: '<rootDir>/test/support/test-environment.ts',
  transform: { '^.+\\.ts$': swc },
  moduleFileExtensions: ['ts', 'js', 'json'],
  // six files at once on this 2-core machine: the e2e files mostly wait (on timeouts, child
  // processes, PostgreSQL) — two kept the cores ~60% busy, three ~70% (`npm test` 536 s), four
  // ~75% (504 s, the same day); on a slower day four took 679 s (jest's own processes ~60% busy,
  // PostgreSQL the rest of what was used), six 565 s with both cores busy throughout
  maxWorkers: 6,
  testTimeout: 60000,
  projects: [
    {
      displayName: 'unit',
      testEnvironment: '<rootDir>/test/support/test-environment.ts',
      transform: { '^.+\\.ts$': swc },
      testMatch: ['<rootDir>/src/**/*.spec.ts'],
    },
    {
      displayName: 'integration',
      testEnvironment: '<rootDir>/test/support/test-environment.ts',
      transform: { '^.+\\.ts$': swc },
      testMatch: ['<rootDir>/test/**/*.test.ts'],
      globalSetup: '<rootDir>/test/support/global-setup.ts',
      globalTeardown: '<rootDir>/test/support/global-teardown.ts',
      setupFiles: ['<rootDir>/test/support/env.ts'],
    },
  ],
};
