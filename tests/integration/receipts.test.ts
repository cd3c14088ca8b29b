/**
 * Delivery receipts (SPEC §10.6, issue 20): the sender, with the delete token, learns what happened to
 * the file — times and counts only; nobody else learns anything from this route.
 */
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { expectError, uploadOk } from '../helpers/files.js';

interface ReceiptBody {
  state: string;
  uses_total: number;
  uses_left: number;
  previewed_at: string | null;
  downloads: { started_at: string; completed_at: string | null }[];
  resumes: number;
  last_resumed_at: string | null;
  refused_after_end: number;
}

describe('the sender receipt', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp();
  });
  afterAll(async () => {
    await app.close();
  });

  const receipt = (key: string, headers: Record<string, string> = {}) =>
    fetch(`${app.url}/files/receipt`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', ...headers },
      body: JSON.stringify({ key }),
    });
  const read = async (key: string, token: string) => {
    const res = await receipt(key, { 'X-Delete-Token': token });
    expect(res.status, await res.clone().text()).toBe(200);
    return (await res.json()) as ReceiptBody;
  };
  const iso = expect.stringMatching(/^\d{4}-\d\d-\d\dT/);

  it('shows the preview, each download started and completed, a resume, the burn and a refused request after it', async () => {
    const up = await uploadOk(app, 'x'.repeat(300_000), 'report.bin', { uses: '2' });
    expect(await read(up.key, up.delete_token)).toEqual({
      state: 'active',
      uses_total: 2,
      uses_left: 2,
      previewed_at: null,
      downloads: [],
      resumes: 0,
      last_resumed_at: null,
      refused_after_end: 0,
    });

    expect((await fetch(up.preview_url)).status).toBe(200);
    const first = await fetch(up.download_url, { headers: { Accept: '*/*' } });
    await first.arrayBuffer();
    // A second download, cut after its first bytes, then resumed to the end: it burns the file.
    const cut = await new Promise<string>((resolve) => {
      http.get(up.download_url, { headers: { Accept: '*/*' } }, (res) => {
        res.once('data', () => {
          res.destroy();
          resolve(res.headers.etag!);
        });
      });
    });
    const resumed = await fetch(up.download_url, { headers: { Accept: '*/*', Range: 'bytes=1000-', 'If-Range': cut } });
    expect(resumed.status).toBe(206);
    await resumed.arrayBuffer();
    expect((await fetch(up.download_url, { headers: { Accept: '*/*' } })).status).toBe(410);

    const after = await read(up.key, up.delete_token);
    expect(after).toEqual({
      state: 'burned',
      uses_total: 2,
      uses_left: 0,
      previewed_at: iso,
      downloads: [
        { started_at: iso, completed_at: iso },
        { started_at: iso, completed_at: iso },
      ],
      resumes: 1,
      last_resumed_at: iso,
      refused_after_end: 1,
    });
    expect(Date.parse(after.downloads[0]!.started_at)).toBeGreaterThanOrEqual(Date.parse(after.previewed_at!));
    // Nothing that could identify a recipient.
    expect(JSON.stringify(after)).not.toMatch(/127\.0\.0\.1|node|undici|agent/i);
  });

  it('answers 403 without the delete token or with the passphrase alone, and 404 for an unknown key', async () => {
    const up = await uploadOk(app, 'private', 'p.txt');
    await expectError(await receipt(up.key), 403, 'INVALID_DELETE_TOKEN');
    await expectError(await receipt(up.key, { 'X-Delete-Token': up.key }), 403, 'INVALID_DELETE_TOKEN');
    await expectError(await receipt('abacus-abdomen-abdominal-abide', { 'X-Delete-Token': up.delete_token }), 404, 'FILE_NOT_FOUND');
    // After a delete, the sender still reads the end of the story.
    expect(
      (await fetch(`${app.url}/files`, { method: 'DELETE', headers: { 'X-Key': up.key, 'X-Delete-Token': up.delete_token } })).status,
    ).toBe(204);
    expect((await read(up.key, up.delete_token)).state).toBe('deleted');
  });

  it('forgets a download that the server failed before its first byte (the use was given back)', async () => {
    const before = new Set(await app.storage.blobIds());
    const up = await uploadOk(app, 'y'.repeat(5000), 'y.bin', { uses: '2' });
    const [blob] = (await app.storage.blobIds()).filter((id) => !before.has(id));
    await app.storage.corrupt(blob!, 100); // inside the first chunk

    await expectError(await fetch(up.download_url, { headers: { Accept: '*/*' } }), 500, 'INTEGRITY_CHECK_FAILED');

    const after = await read(up.key, up.delete_token);
    expect(after).toMatchObject({ state: 'active', uses_left: 2, downloads: [] });
  });
});
