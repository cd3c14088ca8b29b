/**
 * The recipient page's download survives a dropped connection (SPEC §10.2, issue 17): real Chromium
 * downloads through a loopback proxy that cuts the download's connection once, mid-file; the
 * browser's own download manager resumes it (Range + If-Range on the ticket's address) and the saved
 * file is byte-identical, with one use spent.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import net from 'node:net';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { launchChromium } from '../helpers/browser.js';

const MiB = 1024 * 1024;
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/** A TCP proxy to `target` that cuts, once, the first connection carrying more than `cutAfter` bytes back to the client. */
async function cuttingProxy(target: number, cutAfter: number) {
  const seen: string[] = [];
  let cut = false;
  const server = net.createServer((client) => {
    const upstream = net.connect(target, '127.0.0.1');
    let down = 0;
    client.on('data', (d: Buffer) => {
      const line = d.toString('latin1').split('\r\n')[0] ?? '';
      if (/^(GET|POST|HEAD) /.test(line)) seen.push(`${line} ${/\r\nrange: ([^\r]+)/i.exec(d.toString('latin1'))?.[1] ?? ''}`.trim());
      upstream.write(d);
    });
    upstream.on('data', (d: Buffer) => {
      down += d.length;
      if (!cut && down > cutAfter) {
        cut = true;
        client.write(d.subarray(0, d.length - Math.min(d.length, down - cutAfter)));
        client.destroy();
        upstream.destroy();
        return;
      }
      client.write(d);
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    seen,
    wasCut: () => cut,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

describe('a download from the recipient page, cut mid-file', () => {
  let app: TestApp;
  let browser: Browser;
  beforeAll(async () => {
    app = await startTestApp({ env: { MAX_FILE_SIZE: String(32 * MiB) } });
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser.close();
    await app.close();
  });

  it('is resumed by Chromium itself and saved byte for byte, spending one use', async () => {
    const bytes = randomBytes(16 * MiB);
    const up = await fetch(`${app.url}/upload/holiday.bin?uses=2`, {
      method: 'PUT',
      body: new Uint8Array(bytes),
      headers: { Accept: 'application/json' },
    });
    const { key } = (await up.json()) as { key: string };
    const proxy = await cuttingProxy(Number(new URL(app.url).port), 4 * MiB);
    try {
      const context = await browser.newContext({ acceptDownloads: true });
      const page = await context.newPage();
      await page.goto(`http://127.0.0.1:${proxy.port}/d#${key}`);
      await page.locator('#download-button').waitFor({ state: 'visible' });
      const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download-button')]);
      const saved = await download.path();
      expect(await download.failure()).toBeNull();
      expect(proxy.wasCut()).toBe(true);
      expect(sha256(await readFile(saved))).toBe(sha256(bytes));
      // The browser came back on the ticket's address with a Range (and the ETag in If-Range).
      expect(proxy.seen.filter((l) => l.startsWith('GET /download/t/') && /bytes=\d+-/.test(l))).toHaveLength(1);
      const status = (await (await fetch(`${app.url}/status/${key}`)).json()) as { remaining_uses: number };
      expect(status.remaining_uses).toBe(1);
      await context.close();
    } finally {
      await proxy.close();
    }
  });
});
