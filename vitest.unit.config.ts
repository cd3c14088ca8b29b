import { defineConfig } from 'vitest/config';

/**
 * The fast tier (`npm run test:unit`): pure functions, the crypto format against its vectors, the KDF
 * scheduler and pool with fake derivations, use cases with in-memory fakes. No Redis, no processes,
 * no browser: seconds. `npm test` runs these too, with everything else.
 */
export default defineConfig({
  test: {
    include: ['tests/unit/**/*.test.ts'],
    pool: 'threads',
    testTimeout: 10_000,
    reporters: ['default', './tests/helpers/summary-reporter.ts'],
  },
});
