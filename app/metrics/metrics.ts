import { Router } from 'express';
import type { Queue } from 'bullmq';
import type { Logger } from '../shared/logger.js';

const BUCKETS_MS = [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000];

// Events counted, with the field that carries their bytes (if any). Everything is derived from the
// log events the code already emits, so metrics cannot drift from what the logs say happened.
const COUNTED: Record<string, { name: string; help: string; bytesField?: string }> = {
  file_uploaded: { name: 'cinderbox_uploads_total', help: 'Files uploaded.', bytesField: 'size' },
  file_downloaded: { name: 'cinderbox_downloads_total', help: 'Downloads started (uses spent).', bytesField: 'size' },
  file_burned: { name: 'cinderbox_burns_total', help: 'Files burned by their last download.' },
  file_deleted: { name: 'cinderbox_deletes_total', help: 'Files deleted by their sender.' },
  ip_blocked: { name: 'cinderbox_ip_blocks_total', help: 'Clients blocked for failed lookups.' },
  integrity_check_failed: { name: 'cinderbox_integrity_failures_total', help: 'Stored data that failed authentication.' },
};

/**
 * Prometheus text at /metrics (SPEC §3), off unless METRICS_ENABLED. Counts come from a tap on the
 * API's logger; shreds and queue depth come from the janitor queue, which the worker updates.
 */
export function createMetrics(queue: Queue) {
  const counts = new Map<string, number>();
  const bytes = new Map<string, number>();
  const latency = new Map<string, { buckets: number[]; sum: number; count: number }>();

  const observe = (event: string, fields: Record<string, unknown> = {}) => {
    const counted = COUNTED[event];
    if (counted) {
      counts.set(event, (counts.get(event) ?? 0) + 1);
      const size = counted.bytesField ? fields[counted.bytesField] : undefined;
      if (typeof size === 'number') bytes.set(event, (bytes.get(event) ?? 0) + size);
    }
    if (event === 'request_completed' && typeof fields.duration_ms === 'number') {
      const key = `${String(fields.method)} ${String(fields.route)}`;
      const h = latency.get(key) ?? { buckets: BUCKETS_MS.map(() => 0), sum: 0, count: 0 };
      BUCKETS_MS.forEach((le, i) => {
        if ((fields.duration_ms as number) <= le) h.buckets[i]! += 1;
      });
      h.sum += fields.duration_ms / 1000;
      h.count += 1;
      latency.set(key, h);
    }
  };

  /** The logger, tapped: every event also updates the metrics. */
  const tap = (log: Logger): Logger => {
    const wrap = (inner: Logger): Logger => ({
      error: (e, f) => (observe(e, f), inner.error(e, f)),
      warn: (e, f) => (observe(e, f), inner.warn(e, f)),
      info: (e, f) => (observe(e, f), inner.info(e, f)),
      debug: (e, f) => (observe(e, f), inner.debug(e, f)),
      child: (fields) => wrap(inner.child(fields)),
      close: () => inner.close(),
    });
    return wrap(log);
  };

  const render = async (): Promise<string> => {
    const lines: string[] = [];
    for (const [event, def] of Object.entries(COUNTED)) {
      lines.push(`# HELP ${def.name} ${def.help}`, `# TYPE ${def.name} counter`, `${def.name} ${counts.get(event) ?? 0}`);
    }
    lines.push('# HELP cinderbox_upload_bytes_total Plaintext bytes uploaded.', '# TYPE cinderbox_upload_bytes_total counter', `cinderbox_upload_bytes_total ${bytes.get('file_uploaded') ?? 0}`);
    lines.push('# HELP cinderbox_download_bytes_total Plaintext bytes of downloads started.', '# TYPE cinderbox_download_bytes_total counter', `cinderbox_download_bytes_total ${bytes.get('file_downloaded') ?? 0}`);
    const jobs = await queue.getJobCounts('waiting', 'delayed', 'active', 'failed', 'completed');
    lines.push('# HELP cinderbox_janitor_jobs Janitor queue jobs by state (completed includes shreds).', '# TYPE cinderbox_janitor_jobs gauge');
    for (const [state, n] of Object.entries(jobs)) lines.push(`cinderbox_janitor_jobs{state="${state}"} ${n}`);
    lines.push('# HELP cinderbox_http_request_duration_seconds Request latency by route template.', '# TYPE cinderbox_http_request_duration_seconds histogram');
    for (const [key, h] of latency) {
      const [method, route] = key.split(' ');
      const labels = `method="${method}",route="${route}"`;
      BUCKETS_MS.forEach((le, i) => lines.push(`cinderbox_http_request_duration_seconds_bucket{${labels},le="${le / 1000}"} ${h.buckets[i]}`));
      lines.push(`cinderbox_http_request_duration_seconds_bucket{${labels},le="+Inf"} ${h.count}`);
      lines.push(`cinderbox_http_request_duration_seconds_sum{${labels}} ${h.sum}`, `cinderbox_http_request_duration_seconds_count{${labels}} ${h.count}`);
    }
    return `${lines.join('\n')}\n`;
  };

  const router = Router();
  router.get('/metrics', async (_req, res) => {
    res.type('text/plain; version=0.0.4').setHeader('Cache-Control', 'no-store');
    res.send(await render());
  });

  return { tap, router, render };
}
