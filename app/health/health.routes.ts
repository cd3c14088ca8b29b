import { Router, type RequestHandler } from 'express';
import type { AppDeps } from '../app.js';
import { checkHealth } from './health.usecases.js';

export function createHealthRouter(deps: AppDeps, limiter: RequestHandler): Router {
  const router = Router();
  // Non-strict routing: '/health' also matches '/health/' (the Raven path).
  router.get('/health', limiter, async (_req, res) => {
    const report = await checkHealth({
      redis: deps.redis,
      keys: deps.keys,
      store: deps.store,
      wordlistLoaded: deps.wordlist.words.length > 0,
      version: deps.version,
      startedAt: deps.startedAt,
      now: deps.now,
    });
    res.setHeader('Cache-Control', 'no-store');
    res.status(report.status === 'unhealthy' ? 503 : 200).json(report);
  });
  return router;
}
