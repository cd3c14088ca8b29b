import { Router } from 'express';
import type { Registry } from 'prom-client';
import { metricsUnauthorized } from './metrics.errors.js';
import { bearerMatches } from './metrics.models.js';

/** GET /metrics: Prometheus text, never cached, behind METRICS_TOKEN when one is set. */
export function createMetricsRouter(deps: { registry: Registry; token: string | undefined }): Router {
  const router = Router();
  router.get('/metrics', async (req, res) => {
    if (deps.token !== undefined && !bearerMatches(req.get('authorization'), deps.token)) throw metricsUnauthorized();
    const text = await deps.registry.metrics();
    res.setHeader('Cache-Control', 'no-store');
    res.type(deps.registry.contentType).send(text);
  });
  return router;
}
