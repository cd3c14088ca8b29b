import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createSilentLogger } from '../../app/shared/logger.js';
import { installShutdown } from '../../app/shared/shutdown.js';
import yaml from 'js-yaml';

const ROOT = path.resolve(import.meta.dirname, '..', '..');

/** A Compose duration ("40s", "1m30s", "1h") in seconds; NaN when it is not one. */
function seconds(duration: unknown): number {
  const text = String(duration);
  const parts = [...text.matchAll(/(\d+(?:\.\d+)?)(h|ms|m|s|us)/g)];
  if (parts.length === 0 || parts.map((p) => p[0]).join('') !== text) return Number.NaN;
  const unit: Record<string, number> = { h: 3600, m: 60, s: 1, ms: 0.001, us: 0.000001 };
  return parts.reduce((sum, [, n, u]) => sum + Number(n) * unit[u!]!, 0);
}

/** How long installShutdown lets its steps run before it forces the exit, measured on fake timers. */
function shutdownTimeoutMs(): number {
  vi.useFakeTimers();
  const before = { SIGTERM: process.listeners('SIGTERM'), SIGINT: process.listeners('SIGINT') };
  const exit = vi.fn();
  try {
    // The processes' own call (app/main.ts, workers/main.ts) passes no timeoutMs: the default is what runs.
    const shutdown = installShutdown({
      log: createSilentLogger(),
      steps: [{ name: 'in-flight', run: () => new Promise(() => undefined) }],
      exit,
    });
    void shutdown('SIGTERM');
    let elapsed = 0;
    while (exit.mock.calls.length === 0 && elapsed < 600_000) {
      vi.advanceTimersByTime(1000);
      elapsed += 1000;
    }
    expect(exit).toHaveBeenCalledWith(1);
    return elapsed;
  } finally {
    for (const signal of ['SIGTERM', 'SIGINT'] as const) {
      for (const listener of process.listeners(signal)) if (!before[signal].includes(listener)) process.off(signal, listener);
    }
  }
}

describe('compose.yaml gives each process the time its shutdown takes (docs/OPERATIONS.md)', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('sets stop_grace_period on api and worker above the shutdown timeout, so `docker compose stop` never kills a drain', async () => {
    const timeoutSeconds = shutdownTimeoutMs() / 1000;
    expect(timeoutSeconds).toBeGreaterThanOrEqual(10); // measured from the code, not assumed (30 s today)
    const compose = yaml.load(await readFile(path.join(ROOT, 'compose.yaml'), 'utf8')) as {
      services: Record<string, { stop_grace_period?: unknown }>;
    };
    for (const name of ['api', 'worker']) {
      const grace = seconds(compose.services[name]?.stop_grace_period);
      // A margin past the forced exit for closing the log and the exit itself.
      expect(grace, `${name} stop_grace_period`).toBeGreaterThanOrEqual(timeoutSeconds + 5);
    }
  });
});

describe('compose.yaml keeps the API where its port mapping and health check look for it', () => {
  it('pins HOST and PORT for the api, so a HOST or PORT line in .env (meant for npm start) cannot move it', async () => {
    const compose = yaml.load(await readFile(path.join(ROOT, 'compose.yaml'), 'utf8')) as {
      services: Record<string, { environment?: Record<string, unknown>; ports?: string[] }>;
    };
    const api = compose.services.api!;
    expect(api.environment).toMatchObject({ HOST: '0.0.0.0', PORT: '8000' });
    expect(api.ports?.every((mapping) => mapping.endsWith(':8000'))).toBe(true);
  });
});
