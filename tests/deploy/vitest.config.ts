import path from 'node:path';
import { defineConfig } from 'vitest/config';

// The deploy suite (npm run test:deploy): real dockerd, image build, compose. Minutes long cold, so
// the default `npm test` leaves tests/deploy out; .ci/run runs this after the gates.
export default defineConfig({
  root: path.resolve(import.meta.dirname, '..', '..'),
  test: {
    include: ['tests/deploy/**/*.test.ts'],
    pool: 'forks',
    testTimeout: 120_000,
    hookTimeout: 180_000,
    reporters: ['default', './tests/helpers/summary-reporter.ts'],
  },
});
