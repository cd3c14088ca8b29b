import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { API_MALLOC_ENV } from '../../app/shared/heap.js';
import { createKdf } from '../../app/kdf/kdf.js';
import { KEY_LENGTH } from '../../app/crypto/envelope.js';
import { SCRYPT_R, scryptSalt } from '../../app/crypto/keys.js';
import { opensslScryptAsync } from '../../app/crypto/scrypt.js';

/** What a ceiling measurement needs: the KDF's settings and how much work to time. */
export interface CeilingPlan {
  secret: string;
  costLog2: number;
  concurrency: number;
  /** Derivations queued at once per round (more than the KDF's queue takes would be refused as KDF_BUSY). */
  perRound: number;
  rounds: number;
}

const CLIENT = { client: 'bench', aggregate: 'bench' };

/** Derivations per second of `rounds` rounds of `perRound` derivations started at once. */
export async function measureCeiling(kdf: ReturnType<typeof createKdf>, plan: Pick<CeilingPlan, 'perRound' | 'rounds'>): Promise<number> {
  const t0 = process.hrtime.bigint();
  for (let round = 0; round < plan.rounds; round++)
    await Promise.all(
      Array.from({ length: plan.perRound }, (_, i) => kdf.derive(`abacus-abdomen-abdominal-ablaze-${round}-${i}`, CLIENT)),
    );
  return (plan.rounds * plan.perRound) / (Number(process.hrtime.bigint() - t0) / 1e9);
}

export function benchKdf(plan: Pick<CeilingPlan, 'secret' | 'costLog2' | 'concurrency'>) {
  return createKdf({ secret: plan.secret, costLog2: plan.costLog2, concurrency: plan.concurrency, maxPerClient: 1_000 });
}

/**
 * The same KDF on node:crypto's scrypt (OpenSSL's), the engine before native/scrypt.c: the bench
 * reports its ceiling beside the API's engine's, for comparison only.
 */
export function opensslBenchKdf(plan: Pick<CeilingPlan, 'secret' | 'costLog2' | 'concurrency'>) {
  return createKdf({
    secret: plan.secret,
    costLog2: plan.costLog2,
    concurrency: plan.concurrency,
    maxPerClient: 1_000,
    deriveKeys: async ({ passphrase, secret, costLog2 }) => {
      const master = await opensslScryptAsync(passphrase, scryptSalt(secret), { costLog2, r: SCRYPT_R, length: KEY_LENGTH });
      return { lookupId: master.toString('hex'), kek: master };
    },
  });
}

/**
 * The same measurement in a process of its own that runs with the API's glibc settings
 * (API_MALLOC_ENV). With node:crypto's scrypt each derivation mapped and zero-filled its 16 MiB
 * afresh there, where the bench's own process (glibc's defaults) reused them; the native engine
 * keeps its own mappings either way. The pair says how much of the ceiling those settings cost.
 */
export function apiSettingsCeiling(plan: CeilingPlan): { measure(): Promise<number>; close(): void } {
  const child: ChildProcess = fork(fileURLToPath(import.meta.url), ['--child'], {
    env: { ...process.env, ...API_MALLOC_ENV },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  return {
    measure: () =>
      new Promise<number>((resolve, reject) => {
        const onExit = (code: number | null) => reject(new Error(`KDF ceiling process exited (${code})`));
        child.once('exit', onExit);
        child.once('message', (perSecond) => {
          child.off('exit', onExit);
          resolve(Number(perSecond));
        });
        child.send(plan);
      }),
    close: () => void child.kill(),
  };
}

if (process.argv.includes('--child') && process.send) {
  let kdf: ReturnType<typeof createKdf> | undefined;
  process.on('message', (plan: CeilingPlan) => {
    const warm = kdf ? Promise.resolve() : (kdf = benchKdf(plan)).derive('warm up the pool', CLIENT).then(() => undefined);
    void warm.then(() => measureCeiling(kdf!, plan)).then((perSecond) => process.send?.(perSecond));
  });
}
