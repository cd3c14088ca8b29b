import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { waitFor } from '../helpers/files.js';

describe('/metrics', () => {
  let on: TestApp;
  let off: TestApp;
  beforeAll(async () => {
    on = await startTestApp({ env: { METRICS_ENABLED: 'true', RESUME_WINDOW_SECONDS: '0' } });
    off = await startTestApp();
  });
  afterAll(async () => {
    await on.close();
    await off.close();
  });

  it('is not served unless METRICS_ENABLED', async () => {
    expect((await fetch(`${off.url}/metrics`)).status).toBe(404);
  });

  it('counts uploads, downloads, bytes, burns, queue depth and request latency by route template', async () => {
    const body = 'metrics test payload';
    const up = await fetch(`${on.url}/upload/m.txt`, { method: 'PUT', body, headers: { Accept: 'application/json' } });
    const { key } = (await up.json()) as { key: string };
    const down = await fetch(`${on.url}/download/${key}`);
    expect(await down.text()).toBe(body);
    // The request line is logged when the server sees the response finish, a moment after the client.
    await waitFor(async () => on.logs.some((l) => l.event === 'request_completed' && l.route === '/download/:key'), Boolean);

    // The second shred is queued when the download's lease ends, a moment after the last byte.
    const scrape = async () => {
      const res = await fetch(`${on.url}/metrics`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toContain('text/plain');
      return res.text();
    };
    const text = await waitFor(scrape, (t) => /^cinderbox_janitor_jobs\{state="waiting"\} 2$/m.test(t), 5_000, 'both shreds to be queued');
    expect(text).toMatch(/^cinderbox_uploads_total 1$/m);
    expect(text).toMatch(/^cinderbox_downloads_total 1$/m);
    expect(text).toMatch(/^cinderbox_burns_total 1$/m);
    expect(text).toMatch(new RegExp(`^cinderbox_upload_bytes_total ${body.length}$`, 'm'));
    // No worker runs in this test: the expire job waits in the queue, and so do the two shreds (one
    // queued at the burn, one when the download's lease ended).
    expect(text).toMatch(/^cinderbox_janitor_jobs\{state="delayed"\} 1$/m);
    expect(text).toMatch(/^cinderbox_janitor_jobs\{state="waiting"\} 2$/m);
    expect(text).toMatch(/cinderbox_http_request_duration_seconds_count\{method="GET",route="\/download\/:key"\} 1/);
    expect(text).not.toContain(key);
  });
});
