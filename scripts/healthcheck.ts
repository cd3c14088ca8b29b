import { stat } from 'node:fs/promises';

/**
 * The image's health checks (no curl in the image). Reads nothing from the environment but PORT and
 * WORKER_HEALTH_FILE, so it works with any configuration.
 * - API (no argument): GET http://127.0.0.1:$PORT/health within 3 s. Exit 0 on 200 (healthy or
 *   degraded: uploads and downloads still work), 1 otherwise.
 * - `--worker`: exit 0 if the worker rewrote WORKER_HEALTH_FILE within the last 20 s (it does on
 *   every heartbeat that reaches Redis, every 5 s), 1 otherwise: a worker that is hung or cannot reach
 *   Redis turns unhealthy.
 */
const WORKER_BEAT_MAX_AGE_MS = 20_000;

async function apiHealthy(): Promise<boolean> {
  const port = process.env.PORT ?? '8000';
  const res = await fetch(`http://127.0.0.1:${port}/health`, { signal: AbortSignal.timeout(3000) });
  return res.status === 200;
}

async function workerHealthy(): Promise<boolean> {
  const file = process.env.WORKER_HEALTH_FILE;
  if (!file) {
    process.stderr.write('healthcheck: WORKER_HEALTH_FILE is not set, so the worker writes no beat to check\n');
    return false;
  }
  const { mtimeMs } = await stat(file);
  return Date.now() - mtimeMs <= WORKER_BEAT_MAX_AGE_MS;
}

try {
  process.exit((await (process.argv.includes('--worker') ? workerHealthy() : apiHealthy())) ? 0 : 1);
} catch {
  process.exit(1);
}
