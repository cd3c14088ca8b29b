import { constants, PerformanceObserver, performance, type PerformanceEntry } from 'node:perf_hooks';
import { afterEach, describe, expect, it } from 'vitest';
import { countTransferred, TRANSFER_GC_BYTES } from '../../app/shared/heap.js';

const isMinor = (entry: PerformanceEntry) =>
  (entry as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MINOR;

let observer: PerformanceObserver | undefined;
afterEach(() => observer?.disconnect());

describe('pacing young collections to transfers', () => {
  it('collects the young generation once TRANSFER_GC_BYTES of chunks have gone through, not before', async () => {
    const seen: PerformanceEntry[] = [];
    let marks = { start: 0, almost: 0, done: 0 };
    const inWindow = (entry: PerformanceEntry, from: number, to: number) => entry.startTime >= from && entry.startTime <= to;
    const collectedAtThreshold = new Promise<void>((resolve) => {
      observer = new PerformanceObserver((list) => {
        seen.push(...list.getEntries());
        if (seen.some((entry) => isMinor(entry) && inWindow(entry, marks.almost, marks.done))) resolve();
      });
      observer.observe({ entryTypes: ['gc'] });
    });

    marks.start = performance.now();
    for (let sent = 0; sent < TRANSFER_GC_BYTES - 65536; sent += 65536) countTransferred(65536);
    countTransferred(65535);
    marks.almost = performance.now();
    countTransferred(1);
    marks = { ...marks, done: performance.now() };

    // Entries arrive in order: once the collection at the threshold is in, any earlier one would be too.
    await collectedAtThreshold;
    expect(seen.filter((entry) => isMinor(entry) && inWindow(entry, marks.start, marks.almost))).toEqual([]);
  });

  it('leaves no global gc behind for other code to call', () => {
    expect((globalThis as { gc?: unknown }).gc).toBeUndefined();
  });
});
