import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { PAGES_CSP } from '../../app/pages/pages.routes.js';
import { WORDING } from '../../app/shared/wording.js';
import { axeViolations, useBrowserStack } from '../helpers/browser.js';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const ARTIFACTS = path.join(ROOT, 'test-artifacts');

const BOTS = [
  { name: 'facebookexternalhit', ua: 'facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)' },
  { name: 'Slackbot-LinkExpanding', ua: 'Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)' },
  { name: 'plain curl', ua: 'curl/8.5.0' },
];
const BROWSER_ACCEPT = 'text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8';

interface UploadAnswer {
  key: string;
  share_url: string;
  uses: number;
  filename: string;
  size: number;
}

interface StatusAnswer {
  status: number;
  body: { remaining_uses?: number; filename?: string; error?: { code: string; reason?: string; details?: { reason?: string } } };
}

async function uploadViaApi(url: string, file: { name: string; bytes: Buffer; uses: number }): Promise<UploadAnswer> {
  const form = new FormData();
  form.append('uses', String(file.uses));
  form.append('file', new Blob([new Uint8Array(file.bytes)]), file.name);
  const res = await fetch(`${url}/upload`, { method: 'POST', body: form, headers: { Accept: 'application/json' } });
  expect(res.status).toBe(201);
  return (await res.json()) as UploadAnswer;
}

async function statusOf(url: string, key: string): Promise<StatusAnswer> {
  const res = await fetch(`${url}/status`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
    body: JSON.stringify({ key }),
  });
  return { status: res.status, body: (await res.json()) as StatusAnswer['body'] };
}

describe('the browser pages in real Chromium', () => {
  const stack = useBrowserStack();
  const { problems, newContext } = stack;

  beforeAll(async () => {
    await mkdir(ARTIFACTS, { recursive: true });
  });

  it('serves both pages with a CSP without unsafe-inline, no-store and no Referer', async () => {
    expect(PAGES_CSP).not.toContain('unsafe-inline');
    for (const route of ['/', '/d', '/d/']) {
      const res = await fetch(`${stack.app.url}${route}`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^text\/html/);
      expect(res.headers.get('content-security-policy')).toBe(PAGES_CSP);
      expect(res.headers.get('cache-control')).toBe('no-store');
      expect(res.headers.get('referrer-policy')).toBe('no-referrer');
      const html = await res.text();
      expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/); // no inline script
      expect(html).not.toMatch(/\sstyle="/); // no inline style attribute
      expect(html).not.toContain('{{'); // every limit was substituted
    }
    const qr = await fetch(`${stack.app.url}/static/qrcode.mjs`);
    expect(qr.status).toBe(200);
    expect(qr.headers.get('content-type')).toMatch(/javascript/);
  });

  it('uploads through the file input, and a fresh browser downloads it by link with the right name and bytes', async () => {
    const name = 'relatório de março.txt';
    const bytes = Buffer.from(`quarterly numbers ${'0123456789'.repeat(5000)}\n`);

    const sender = await (await newContext('sender')).newPage();
    await sender.goto(`${stack.app.url}/`);
    await sender.setInputFiles('#file', { name, mimeType: 'text/plain', buffer: bytes });
    await sender.selectOption('#uses', '2');
    await sender.click('#upload-button');
    await sender.locator('#result').waitFor({ state: 'visible' });

    const shareUrl = (await sender.textContent('#share-link'))!.trim();
    const key = (await sender.textContent('#passphrase'))!.trim();
    expect(shareUrl).toBe(`${stack.app.url}/d#${key}`);
    expect(await sender.evaluate(() => document.activeElement?.id)).toBe('result-heading');
    expect(await sender.locator('#qr svg path').count()).toBe(1);
    expect(await sender.textContent('#uses-left')).toBe('2');
    expect(await sender.textContent('#result-filename')).toBe(name);

    const recipientContext = await newContext('recipient');
    const recipient = await recipientContext.newPage();
    const requestedUrls: string[] = [];
    recipient.on('request', (request) => requestedUrls.push(request.url()));
    await recipient.goto(shareUrl);
    await expect.poll(() => recipient.textContent('#file-heading')).toBe(name);
    // The key left the address bar and history, and never went into a URL the server saw.
    expect(recipient.url()).toBe(`${stack.app.url}/d`);
    expect(await recipient.textContent('#uses-left')).toBe('2');
    const afterLook = await statusOf(stack.app.url, key);
    expect(afterLook.body.remaining_uses).toBe(2);

    // Reloading spends nothing either.
    await recipient.reload();
    expect((await statusOf(stack.app.url, key)).body.remaining_uses).toBe(2);
    await recipient.goto(shareUrl);
    await expect.poll(() => recipient.textContent('#file-heading')).toBe(name);

    const [download] = await Promise.all([recipient.waitForEvent('download'), recipient.click('#download-button')]);
    expect(download.suggestedFilename()).toBe(name);
    const saved = await readFile((await download.path())!);
    expect(saved.equals(bytes)).toBe(true);

    await expect.poll(() => recipient.textContent('#uses-left'), { timeout: 10_000 }).toBe('1');
    expect((await statusOf(stack.app.url, key)).body.remaining_uses).toBe(1);
    expect(requestedUrls.filter((u) => u.includes(key))).toEqual([]);

    // The sender's card shows the delivery receipt (it asks when the tab comes back to view).
    await sender.evaluate(() => document.dispatchEvent(new Event('visibilitychange')));
    await expect.poll(() => sender.textContent('#receipt-events'), { timeout: 10_000 }).toMatch(/Download 1: started at .+, completed at /);
    expect(await sender.textContent('#uses-left')).toBe('1');
    expect(await axeViolations(sender)).toEqual([]);
    expect(problems).toEqual([]);
  });

  it('finds a file from a typed passphrase in any case with spaces, and says when the last download destroyed it', async () => {
    const bytes = Buffer.from('meeting notes\n');
    const upload = await uploadViaApi(stack.app.url, { name: 'notes.txt', bytes, uses: 1 });

    const page = await (await newContext('typed')).newPage();
    await page.goto(`${stack.app.url}/d`);
    await page.fill('#passphrase-input', `  ${upload.key.toUpperCase().split('-').join('  ')} `);
    await page.press('#passphrase-input', 'Enter');
    await expect.poll(() => page.textContent('#file-heading')).toBe('notes.txt');
    expect((await statusOf(stack.app.url, upload.key)).body.remaining_uses).toBe(1);

    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download-button')]);
    expect(download.suggestedFilename()).toBe('notes.txt');
    expect((await readFile((await download.path())!)).equals(bytes)).toBe(true);
    await expect.poll(() => page.textContent('#download-note'), { timeout: 10_000 }).toContain('This was the last download');
    const gone = await statusOf(stack.app.url, upload.key);
    expect(gone.status).toBe(410);
    expect(gone.body.error?.code).toBe('FILE_GONE');
    expect(problems).toEqual([]);
  });

  it('explains a wrong passphrase and a burned link in words', async () => {
    const page = await (await newContext('states')).newPage();
    const wordlist = (await readFile(path.join(ROOT, 'data', 'eff_large_wordlist.txt'), 'utf8')).split('\n');
    const words = wordlist.slice(100, 104).map((line) => line.split('\t')[1]);
    await page.goto(`${stack.app.url}/d`);
    await page.fill('#passphrase-input', words.join(' '));
    await page.click('#lookup-button');
    await expect.poll(() => page.textContent('#lookup-error')).toContain('No file matches this passphrase');

    const burned = await uploadViaApi(stack.app.url, { name: 'once.txt', bytes: Buffer.from('x'), uses: 1 });
    const spend = await fetch(`${stack.app.url}/download/${burned.key}`);
    expect(spend.status).toBe(200);
    await spend.arrayBuffer();
    await page.goto(`${stack.app.url}/d#${burned.key}`);
    await expect.poll(() => page.textContent('#state-heading')).toBe('This file is gone');
    expect(await page.textContent('#state-text')).toContain(WORDING.gone.burned);

    expect(problems).toEqual([]);
  });

  it('lets link-preview bots and curl fetch the share link without spending a download', async () => {
    const upload = await uploadViaApi(stack.app.url, { name: 'preview-me.txt', bytes: Buffer.from('hello'), uses: 1 });
    for (const bot of BOTS) {
      // fetch() drops the fragment, exactly as every HTTP client does: the server sees only GET /d.
      const page = await fetch(upload.share_url, {
        headers: { 'User-Agent': bot.ua, Accept: bot.name === 'plain curl' ? '*/*' : BROWSER_ACCEPT },
      });
      expect(page.status).toBe(200);
      expect(await page.text()).not.toContain(upload.key);
      if (bot.name !== 'plain curl') {
        // A bot that follows the download URL with a browser-like Accept is sent to the page instead.
        const direct = await fetch(`${stack.app.url}/download/${upload.key}`, {
          headers: { 'User-Agent': bot.ua, Accept: BROWSER_ACCEPT },
          redirect: 'manual',
        });
        expect(direct.status).toBe(303);
        expect(direct.headers.get('location')).toMatch(new RegExp(`/d#${upload.key}$`));
        await direct.arrayBuffer();
      }
    }
    const after = await statusOf(stack.app.url, upload.key);
    expect(after.status).toBe(200);
    expect(after.body.remaining_uses).toBe(1);

    // And a person opening the link afterwards still gets the file.
    const page = await (await newContext('after-bots')).newPage();
    await page.goto(upload.share_url);
    await expect.poll(() => page.textContent('#file-heading')).toBe('preview-me.txt');
    expect(problems).toEqual([]);
  });

  it('has no serious or critical axe findings on either page, and saves screenshots at 1280 and 390 px', async () => {
    const upload = await uploadViaApi(stack.app.url, { name: 'Annual report 2026.pdf.txt', bytes: Buffer.alloc(48_000, 65), uses: 3 });
    const findings: string[] = [];
    for (const width of [1280, 390]) {
      const context = await newContext(`axe-${width}`, width);

      const sender = await context.newPage();
      await sender.goto(`${stack.app.url}/`);
      findings.push(...(await axeViolations(sender)).map((f) => `/ form @${width}: ${f}`));
      await sender.screenshot({ path: path.join(ARTIFACTS, `upload-${width}.png`), fullPage: true });
      await sender.setInputFiles('#file', { name: 'holiday photos.zip.txt', mimeType: 'text/plain', buffer: Buffer.alloc(20_000, 66) });
      await sender.click('#upload-button');
      await sender.locator('#result').waitFor({ state: 'visible' });
      findings.push(...(await axeViolations(sender)).map((f) => `/ result @${width}: ${f}`));
      await sender.screenshot({ path: path.join(ARTIFACTS, `upload-result-${width}.png`), fullPage: true });

      const recipient = await context.newPage();
      await recipient.goto(`${stack.app.url}/d`);
      findings.push(...(await axeViolations(recipient)).map((f) => `/d form @${width}: ${f}`));
      await recipient.screenshot({ path: path.join(ARTIFACTS, `download-form-${width}.png`), fullPage: true });
      await recipient.goto(upload.share_url);
      await recipient.locator('#file-card').waitFor({ state: 'visible' });
      findings.push(...(await axeViolations(recipient)).map((f) => `/d file @${width}: ${f}`));
      await recipient.screenshot({ path: path.join(ARTIFACTS, `download-file-${width}.png`), fullPage: true });
    }
    expect(findings).toEqual([]);
    expect((await statusOf(stack.app.url, upload.key)).body.remaining_uses).toBe(3);
    expect(problems).toEqual([]);
  });
});
