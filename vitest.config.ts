import { configDefaults, defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['tests/**/*.test.ts'],
    // The deploy suite builds images and runs compose (minutes cold): npm run test:deploy, and .ci/run.
    exclude: [...configDefaults.exclude, 'tests/deploy/**'],
    globalSetup: ['tests/helpers/global-setup.ts'],
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: ['default', './tests/helpers/summary-reporter.ts'],
  },
});
