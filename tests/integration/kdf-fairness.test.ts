import { performance } from 'node:perf_hooks';
import { describe, expect, it } from 'vitest';
import { clientIdentity } from '../../app/abuse/client.models.js';
import { kdfBusy } from '../../app/crypto/crypto.errors.js';
import { createKdf } from '../../app/kdf/kdf.js';

const BUSY = kdfBusy();
const isBusy = (error: unknown) =>
  error instanceof Error && error.message === BUSY.message && (error as { code?: unknown }).code === (BUSY as { code?: unknown }).code;

const FLOODERS = 200;
const LOOKUPS = 20;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)]!;
}

describe('the KDF under a flood, with the real scrypt (cost 2^14, 2 slots)', () => {
  it(`keeps a legitimate client's ${LOOKUPS} lookups under 2 s at p95, with no refusal, against ${FLOODERS} flooding /64s of one /56`, async () => {
    const kdf = createKdf({ secret: 'fairness-test-secret-0123456789abcdef', costLog2: 14, concurrency: 2, maxQueue: 256 });
    const legitimate = clientIdentity('198.51.100.7');

    const idleStart = performance.now();
    await kdf.derive('idle-measure-one', legitimate);
    const idleMs = performance.now() - idleStart;

    // Every answered flood request is polled again at once; a refused one retries at the next
    // answer anyone gets (harsher than honouring Retry-After: 1): the flood never lets up.
    let stopped = false;
    let wake: () => void = () => undefined;
    let nextAnswer = new Promise<void>((resolve) => (wake = resolve));
    const answered = () => {
      wake();
      nextAnswer = new Promise<void>((resolve) => (wake = resolve));
    };
    const flood = { served: 0, refused: 0 };
    const flooder = async (i: number) => {
      // 2001:db8:5:4200::/56 holds 256 /64s, all in the /48 2001:db8:5::/48.
      const who = clientIdentity(`2001:db8:5:${(0x4200 + i).toString(16)}::${(i + 1).toString(16)}`);
      while (!stopped) {
        try {
          await kdf.derive(`flood-${i}-poll`, who);
          flood.served += 1;
          answered();
        } catch (error) {
          if (!isBusy(error)) throw error;
          flood.refused += 1;
          await nextAnswer;
        }
      }
    };
    const flooders = Array.from({ length: FLOODERS }, (_, i) => flooder(i));
    expect(kdf.stats()).toMatchObject({ active: 2, queued: 64, aggregates: 1 });

    const latencies: number[] = [];
    const queuedAhead: number[] = [];
    for (let i = 0; i < LOOKUPS; i += 1) {
      queuedAhead.push(kdf.stats().queued);
      const start = performance.now();
      await kdf.derive(`legitimate-lookup-${i}`, legitimate); // a refusal fails the test here
      latencies.push(performance.now() - start);
      answered();
    }

    stopped = true;
    const floodServedDuringRun = flood.served;
    wake();
    await Promise.all(flooders);

    const sorted = [...latencies].sort((a, b) => a - b);
    const p50 = percentile(sorted, 0.5);
    const p95 = percentile(sorted, 0.95);
    console.info(
      `kdf fairness: one idle derivation ${idleMs.toFixed(0)} ms; legitimate lookups p50 ${p50.toFixed(0)} ms, ` +
        `p95 ${p95.toFixed(0)} ms, max ${sorted.at(-1)!.toFixed(0)} ms; flood served ${floodServedDuringRun}, refused ${flood.refused}; ` +
        `flood tasks waiting at each lookup: min ${Math.min(...queuedAhead)}`,
    );
    // The flood was there for every lookup (its /48 at its queue cap), and it was served too.
    expect(Math.min(...queuedAhead)).toBeGreaterThanOrEqual(60);
    expect(floodServedDuringRun).toBeGreaterThan(LOOKUPS);
    expect(flood.refused).toBeGreaterThan(0);
    expect(latencies).toHaveLength(LOOKUPS);
    expect(p95).toBeLessThan(2_000);
    expect(kdf.stats()).toMatchObject({ active: 0, queued: 0, clients: 0 });
  }, 30_000);
});
