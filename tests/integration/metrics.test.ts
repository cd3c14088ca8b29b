/**
 * Both processes' metrics, scraped from real processes (SPEC §10.6, issue 20): the API and the
 * janitor run as two processes on the suite's Redis; the test only speaks HTTP to them and reads
 * their logs, and parses every scrape with the strict parser.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { JANITOR_QUEUE } from '../../app/jobs/catalogue.js';
import { createWorkerRedis } from '../../app/shared/redis.js';
import { redisKeys } from '../../app/shared/redis-keys.js';
import { startSlowDownload, waitFor } from '../helpers/files.js';
import { parsePrometheus, type Scrape } from '../helpers/prometheus.js';
import { ROOT, runTs } from '../helpers/processes.js';
import { freePort } from '../helpers/redis-server.js';
import { startStack, type Stack } from '../helpers/stack.js';

const TOKEN = 'integration-metrics-token-0123456789';
const MiB = 1024 * 1024;

describe('metrics of the API and the janitor, from real processes', () => {
  let stack: Stack;
  let workerMetrics: string;

  beforeAll(async () => {
    const workerPort = await freePort();
    workerMetrics = `http://127.0.0.1:${workerPort}/metrics`;
    stack = await startStack({
      // No resume window: a burned file's blob is shredded as soon as its download ends.
      env: {
        METRICS_ENABLED: 'true',
        METRICS_TOKEN: TOKEN,
        MIN_EXPIRY_MINUTES: '0.01',
        MAX_FILE_SIZE: String(64 * MiB),
        RESUME_WINDOW_SECONDS: '0',
      },
      workerEnv: { WORKER_METRICS_PORT: String(workerPort) },
    });
  });
  afterAll(async () => {
    await stack.stop();
  });

  const scrape = async (url: string): Promise<Scrape> => {
    const res = await fetch(url, { headers: { Authorization: `Bearer ${TOKEN}` } });
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-store');
    return parsePrometheus(await res.text());
  };
  const api = () => scrape(`${stack.url}/metrics`);
  const worker = () => scrape(workerMetrics);
  /** Scrapes the worker until `check` holds (the job's completion is recorded a moment after its last log line). */
  const workerUntil = (check: (s: Scrape) => boolean, what: string) => waitFor(worker, check, 20_000, what);
  const upload = async (body: BodyInit, query: string) => {
    const res = await fetch(`${stack.url}/upload/f.bin?${query}`, { method: 'PUT', body, headers: { Accept: 'application/json' } });
    expect(res.status).toBe(201);
    return (await res.json()) as { key: string; delete_token: string };
  };

  it('serves the janitor metrics at /metrics only, with the bearer token, in strict text with the process metrics', async () => {
    expect((await fetch(workerMetrics)).status).toBe(401);
    expect((await fetch(workerMetrics, { headers: { Authorization: `Bearer ${TOKEN.slice(1)}` } })).status).toBe(401);
    expect((await fetch(workerMetrics.replace('/metrics', '/health'), { headers: { Authorization: `Bearer ${TOKEN}` } })).status).toBe(404);
    expect((await fetch(workerMetrics, { method: 'POST', headers: { Authorization: `Bearer ${TOKEN}` } })).status).toBe(405);

    const res = await fetch(workerMetrics, { headers: { Authorization: `Bearer ${TOKEN}` } });
    expect(res.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
    const metrics = parsePrometheus(await res.text());
    expect(metrics.samples.every((s) => s.labels.service === 'worker')).toBe(true);
    for (const name of [
      'process_resident_memory_bytes',
      'nodejs_heap_size_used_bytes',
      'nodejs_eventloop_lag_seconds',
      'nodejs_gc_duration_seconds',
    ]) {
      expect(metrics.families.has(name), name).toBe(true);
    }
    expect(metrics.value('cinderbox_janitor_jobs', { state: 'active' })).toBeGreaterThanOrEqual(0);
    const listening = await stack.worker.waitForEvent('metrics_listening');
    expect(listening).toMatchObject({ host: '127.0.0.1' });
    // The sweep at start ran (or found another running): counted by its trigger.
    await workerUntil((s) => s.sum('cinderbox_sweeps_total', { trigger: 'startup' }) >= 1, 'the startup sweep');
  });

  it('moves the counters of both processes after an upload, a download that burns and the shred', async () => {
    const [apiBefore, workerBefore] = await Promise.all([api(), worker()]);
    const body = randomBytes(3000);
    const { key } = await upload(body, 'uses=1');
    const since = stack.worker.mark();
    const down = await fetch(`${stack.url}/download/${key}`);
    expect(Buffer.from(await down.arrayBuffer()).equals(body)).toBe(true);
    await stack.worker.waitForEvent('blob_shredded', 20_000, { since });

    const workerAfter = await workerUntil(
      (s) => s.sum('cinderbox_shred_latency_seconds_count') > workerBefore.sum('cinderbox_shred_latency_seconds_count'),
      'the shred job to complete',
    );
    const apiAfter = await api();
    const moved = (after: Scrape, before: Scrape, name: string, labels?: Record<string, string>) =>
      after.sum(name, labels) - before.sum(name, labels);
    expect(moved(apiAfter, apiBefore, 'cinderbox_uploads_total')).toBe(1);
    expect(moved(apiAfter, apiBefore, 'cinderbox_upload_bytes_total')).toBe(3000);
    expect(moved(apiAfter, apiBefore, 'cinderbox_downloads_total')).toBe(1);
    expect(moved(apiAfter, apiBefore, 'cinderbox_download_bytes_total')).toBe(3000);
    expect(moved(apiAfter, apiBefore, 'cinderbox_burns_total')).toBe(1);
    expect(
      moved(apiAfter, apiBefore, 'cinderbox_http_request_duration_seconds_count', { route: '/upload/:filename', status_class: '2xx' }),
    ).toBe(1);

    // The burn's shred or the one queued when the download's lease ended destroyed the blob, once: two
    // jobs of one blob never destroy it side by side (a lock per blob), the later one finds it gone.
    const shredded = moved(workerAfter, workerBefore, 'cinderbox_shreds_total', { kind: 'blob' });
    expect(shredded).toBe(1);
    expect(
      moved(workerAfter, workerBefore, 'cinderbox_shreds_total', { reason: 'burned' }) +
        moved(workerAfter, workerBefore, 'cinderbox_shreds_total', { reason: 'released' }),
    ).toBe(shredded);
    expect(moved(workerAfter, workerBefore, 'cinderbox_shreds_total', { reason: 'expired' })).toBe(0);
    expect(moved(workerAfter, workerBefore, 'cinderbox_shredded_bytes_total')).toBeGreaterThan(3000); // ciphertext: header and tags too
    expect(moved(workerAfter, workerBefore, 'cinderbox_janitor_job_duration_seconds_count', { job_name: 'shred' })).toBeGreaterThanOrEqual(
      1,
    );
    const latency = moved(workerAfter, workerBefore, 'cinderbox_shred_latency_seconds_sum');
    expect(latency).toBeGreaterThan(0);
    expect(latency).toBeLessThan(15);
  });

  it('times an expiry from the moment the file expired, not from its upload', async () => {
    const before = await worker();
    await upload(Buffer.from('short-lived'), 'expiry=0.1'); // 6 seconds
    const since = stack.worker.mark();
    await stack.worker.waitForEvent('file_expired', 20_000, { since });
    const after = await workerUntil(
      (s) =>
        s.value('cinderbox_shred_latency_seconds_count', { reason: 'expired' }) >
        before.value('cinderbox_shred_latency_seconds_count', { reason: 'expired' }),
      'the expire job to complete',
    );
    expect(
      after.value('cinderbox_shreds_total', { reason: 'expired', kind: 'blob' }) -
        before.value('cinderbox_shreds_total', { reason: 'expired', kind: 'blob' }),
    ).toBe(1);
    const seconds =
      after.value('cinderbox_shred_latency_seconds_sum', { reason: 'expired' }) -
      before.value('cinderbox_shred_latency_seconds_sum', { reason: 'expired' });
    expect(seconds).toBeGreaterThanOrEqual(0);
    expect(seconds).toBeLessThan(5);
  });

  it('counts a destroy that waits for a running download (a lease wait) and how long it is told to wait', async () => {
    const before = await worker();
    const bytes = randomBytes(24 * MiB); // more than loopback buffers hold: a paused client keeps the download open
    const { key, delete_token: token } = await upload(bytes, 'uses=2');
    const download = await startSlowDownload(`${stack.url}/download/${key}`);
    expect((await fetch(`${stack.url}/files/${key}`, { method: 'DELETE', headers: { 'X-Delete-Token': token } })).status).toBe(204);

    const deferred = await workerUntil(
      (s) =>
        s.value('cinderbox_destroy_deferrals_total', { reason: 'deleted' }) >
        before.value('cinderbox_destroy_deferrals_total', { reason: 'deleted' }),
      'the deferred destroy',
    );
    const wait =
      deferred.value('cinderbox_destroy_deferral_seconds_sum', { reason: 'deleted' }) -
      (before.find('cinderbox_destroy_deferral_seconds_sum', { reason: 'deleted' }) ?? 0);
    expect(wait).toBeGreaterThan(0);
    expect(wait).toBeLessThanOrEqual(16); // a lease is renewed 15 s ahead
    expect(deferred.sum('cinderbox_shreds_total', { kind: 'blob' })).toBe(before.sum('cinderbox_shreds_total', { kind: 'blob' })); // nothing destroyed under the download

    const finished = await download.finish();
    expect(finished.complete).toBe(true);
    expect(finished.body.equals(bytes)).toBe(true);
    // The lease's end queues a shred of its own (reason released), which destroys the bytes at once. The
    // shred counts when the job logs it; its latency when BullMQ reports the job completed, a round trip later.
    const released = (s: Scrape) => s.value('cinderbox_shreds_total', { reason: 'released', kind: 'blob' });
    const timed = (s: Scrape) => s.find('cinderbox_shred_latency_seconds_count', { reason: 'released' }) ?? 0;
    const after = await workerUntil((s) => released(s) > released(before) && timed(s) > timed(before), 'the released shred to complete');
    expect(released(after) - released(before)).toBe(1);
  });

  it('counts a job that fails for good by its name', async () => {
    const before = await worker();
    const redis = createWorkerRedis(inject('redisUrl'));
    const queue = new Queue(JANITOR_QUEUE, { connection: redis, prefix: redisKeys(stack.prefix).queuePrefix() });
    try {
      const since = stack.worker.mark();
      await queue.add('shred', { blobId: 'not a blob id', reason: 'burned' }, { attempts: 3 });
      await stack.worker.waitForEvent('job_failed', 20_000, { since });
      const after = await workerUntil(
        (s) => s.value('cinderbox_janitor_job_failures_total', { job_name: 'shred', final: 'true' }) > 0,
        'the failure to be counted',
      );
      expect(
        after.value('cinderbox_janitor_job_failures_total', { job_name: 'shred', final: 'true' }) -
          before.value('cinderbox_janitor_job_failures_total', { job_name: 'shred', final: 'true' }),
      ).toBe(1);
      expect(after.value('cinderbox_janitor_job_failures_total', { job_name: 'shred', final: 'false' })).toBe(
        before.value('cinderbox_janitor_job_failures_total', { job_name: 'shred', final: 'false' }),
      );
      expect(after.value('cinderbox_janitor_jobs', { state: 'failed' })).toBeGreaterThanOrEqual(1);
    } finally {
      await queue.close();
      redis.disconnect();
    }
  });

  it('exports every metric and label that docs/alerts.yml and docs/grafana-dashboard.json use; each alert has its runbook', async () => {
    // One request, so the request histogram has its labels even when this test runs alone.
    expect((await fetch(`${stack.url}/health`)).status).toBe(200);
    const apiScrape = await waitFor(
      api,
      (s) => s.sum('cinderbox_http_request_duration_seconds_count', { route: '/health' }) > 0,
      5_000,
      'the request to be counted',
    );
    const workerScrape = await worker();
    const families = new Map([...apiScrape.families, ...workerScrape.families]);
    const labels = new Set([
      'instance',
      'job',
      'le',
      ...[...apiScrape.samples, ...workerScrape.samples].flatMap((s) => Object.keys(s.labels)),
    ]);
    const exported = (name: string) =>
      families.has(name) ||
      ['_bucket', '_sum', '_count'].some(
        (suffix) => name.endsWith(suffix) && families.get(name.slice(0, -suffix.length))?.type === 'histogram',
      );

    const alerts = await readFile(path.join(ROOT, 'docs/alerts.yml'), 'utf8');
    const dashboard = JSON.parse(await readFile(path.join(ROOT, 'docs/grafana-dashboard.json'), 'utf8')) as {
      panels: { targets?: { expr: string }[] }[];
    };
    const exprs = [...expressionsOf(alerts), ...dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr))];
    expect(exprs.length).toBeGreaterThan(40);
    for (const expr of exprs) {
      for (const name of expr.match(/\b(cinderbox|nodejs|process)_[a-z0-9_]+/g) ?? [])
        expect(exported(name), `${name} in ${expr}`).toBe(true);
      for (const [, label] of expr.matchAll(/([a-z_]+)\s*(?:=~|!~|!=|=)\s*"/g))
        expect(labels.has(label!), `label ${label} in ${expr}`).toBe(true);
      for (const [, list] of expr.matchAll(/\bby \(([^)]*)\)/g))
        for (const label of list!.split(',').map((l) => l.trim())) expect(labels.has(label), `by ${label} in ${expr}`).toBe(true);
    }

    const operations = await readFile(path.join(ROOT, 'docs/OPERATIONS.md'), 'utf8');
    const names = [...alerts.matchAll(/- alert: (\w+)/g)].map((m) => m[1]!);
    const runbooks = [...alerts.matchAll(/runbook: "docs\/OPERATIONS\.md#(\w+)"/g)].map((m) => m[1]);
    expect(names.length).toBeGreaterThanOrEqual(11);
    expect(runbooks).toEqual(names.map((n) => n.toLowerCase()));
    for (const name of names) expect(operations, `runbook of ${name}`).toMatch(new RegExp(`^#### ${name}$`, 'm'));
  });

  // promtool (Debian package `prometheus`, which the README's test command installs) checks PromQL itself.
  it('passes promtool check rules: the alerts, and every dashboard query as a recording rule', async () => {
    if (PROMTOOL === null) throw new Error('promtool is not installed: apt-get install -y prometheus (the README test command does)');
    const dashboard = JSON.parse(await readFile(path.join(ROOT, 'docs/grafana-dashboard.json'), 'utf8')) as {
      panels: { targets?: { expr: string }[] }[];
    };
    const queries = dashboard.panels.flatMap((p) =>
      (p.targets ?? []).map((t) => t.expr.replaceAll('$__rate_interval', '5m').replaceAll('$instance', '.*')),
    );
    const rules = [
      'groups:',
      '  - name: dashboard',
      '    rules:',
      ...queries.flatMap((expr, i) => [`      - record: dashboard_query_${i}`, `        expr: ${JSON.stringify(expr)}`]),
    ].join('\n');
    const file = path.join(os.tmpdir(), `cbx-dashboard-rules-${process.pid}.yml`);
    await writeFile(file, `${rules}\n`);
    try {
      for (const target of [path.join(ROOT, 'docs/alerts.yml'), file]) {
        const result = spawnSync(PROMTOOL!, ['check', 'rules', target], { encoding: 'utf8' });
        expect(result.status, result.stdout + result.stderr).toBe(0);
      }
    } finally {
      await rm(file, { force: true });
    }
  });

  // The sweep's success gauge exists only once a sweep finished cleanly: a worker whose every sweep
  // fails from its start has no series at all, and the alert must see that too (promtool test rules).
  it('fires CinderboxSweepStale for a worker that has run an hour without one clean sweep', () => {
    promtoolTest({
      // Started at 0 and scraped for three hours; its sweeps only ever fail.
      input_series: [
        { series: 'process_start_time_seconds{service="worker",instance="w"}', values: '0x180' },
        { series: 'cinderbox_sweeps_total{service="worker",instance="w",result="incomplete"}', values: '0+1x180' },
      ],
      alert_rule_test: [
        { eval_time: '50m', alertname: 'CinderboxSweepStale', exp_alerts: [] },
        {
          eval_time: '90m',
          alertname: 'CinderboxSweepStale',
          exp_alerts: [
            {
              exp_labels: { severity: 'warning' },
              exp_annotations: {
                summary: 'No orphan sweep has finished cleanly for over an hour',
                runbook: 'docs/OPERATIONS.md#cinderboxsweepstale',
              },
            },
          ],
        },
      ],
    });
  });

  it('fires CinderboxJanitorOverdue when a delayed job stays due for over ten minutes, not for a late minute', () => {
    promtoolTest({
      input_series: [
        // A worker a minute late now and then: never for long.
        { series: 'cinderbox_janitor_overdue_seconds{service="api",instance="a"}', values: '0 60 0 60 0 60 0 0 0 0 0x30' },
        // A stuck worker from minute 0 on: the oldest due job ages a minute per minute.
        { series: 'cinderbox_janitor_overdue_seconds{service="worker",instance="w"}', values: '0x10 0+60x30' },
      ],
      alert_rule_test: [
        { eval_time: '19m', alertname: 'CinderboxJanitorOverdue', exp_alerts: [] },
        {
          eval_time: '30m',
          alertname: 'CinderboxJanitorOverdue',
          exp_alerts: [
            {
              exp_labels: { severity: 'warning' },
              exp_annotations: {
                summary: 'A janitor job has been due for 19m 0s: expired files are not being shredded',
                runbook: 'docs/OPERATIONS.md#cinderboxjanitoroverdue',
              },
            },
          ],
        },
      ],
    });
  });

  it('stops a worker whose metrics port is taken, saying why', async () => {
    const taken = new URL(stack.url).port;
    const second = runTs('workers/main.ts', { ...stack.env, WORKER_METRICS_PORT: taken });
    const failed = await second.waitForEvent('startup_failed');
    expect(String(failed.reason)).toMatch(/^metrics port: .*EADDRINUSE/);
    expect((await second.exited).code).toBe(1);
  });
});

/** Runs `promtool test rules` on docs/alerts.yml with one test case (series one minute apart). */
function promtoolTest(testCase: { input_series: { series: string; values: string }[]; alert_rule_test: unknown[] }): void {
  if (PROMTOOL === null) throw new Error('promtool is not installed: apt-get install -y prometheus (the README test command does)');
  const file = path.join(os.tmpdir(), `cbx-alert-tests-${process.pid}-${randomBytes(4).toString('hex')}.yml`);
  const tests = { rule_files: [path.join(ROOT, 'docs/alerts.yml')], evaluation_interval: '1m', tests: [{ interval: '1m', ...testCase }] };
  writeFileSync(file, JSON.stringify(tests)); // JSON is YAML
  try {
    const result = spawnSync(PROMTOOL, ['test', 'rules', file], { encoding: 'utf8' });
    expect(result.status, result.stdout + result.stderr).toBe(0);
  } finally {
    rmSync(file, { force: true });
  }
}

/** The `expr:` of every rule: one line, or a `|` block indented below it. */
function expressionsOf(rulesYaml: string): string[] {
  const lines = rulesYaml.split('\n');
  const exprs: string[] = [];
  lines.forEach((line, i) => {
    const match = /^(\s*)expr: (.*)$/.exec(line);
    if (!match) return;
    if (match[2] !== '|') return void exprs.push(match[2]!);
    const block: string[] = [];
    for (let j = i + 1; j < lines.length && (lines[j]!.trim() === '' || lines[j]!.search(/\S/) > match[1]!.length); j += 1)
      block.push(lines[j]!.trim());
    exprs.push(block.join(' '));
  });
  return exprs;
}

function findPromtool(): string | null {
  const candidate = process.env.CBX_PROMTOOL ?? 'promtool';
  return spawnSync(candidate, ['--version']).status === 0 ? candidate : null;
}
const PROMTOOL = findPromtool();
