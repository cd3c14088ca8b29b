import { expect } from 'vitest';
import { INTEGRITY_CHECK_FAILED, isIntegrityCheckFailed, type IntegrityFailure } from '../../app/crypto/crypto.errors.js';

/** Runs `action`, which must throw an integrity failure (with `expected`'s reason and released bytes when given). */
export function expectIntegrityFailure(action: () => unknown, expected: { reason?: IntegrityFailure; bytesReleased?: number } = {}): void {
  let caught: unknown;
  try {
    action();
  } catch (error) {
    caught = error;
  }
  expect(isIntegrityCheckFailed(caught)).toBe(true);
  if (!isIntegrityCheckFailed(caught)) return;
  expect(caught.code).toBe(INTEGRITY_CHECK_FAILED);
  if (expected.reason !== undefined) expect(caught.reason).toBe(expected.reason);
  if (expected.bytesReleased !== undefined) expect(caught.bytesReleased).toBe(expected.bytesReleased);
}
