import type { Page } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { useBrowserStack } from '../helpers/browser.js';

/** The result card's receipt cadence (upload.js RECEIPT_EVERY_MS). */
const RECEIPT_EVERY_MS = 15_000;

interface UploadAnswer {
  key: string;
  download_url: string;
  filename: string;
}

async function uploadViaApi(url: string, name: string, body: string): Promise<UploadAnswer> {
  const form = new FormData();
  form.append('file', new Blob([body]), name);
  const res = await fetch(`${url}/upload`, { method: 'POST', body: form, headers: { Accept: 'application/json' } });
  expect(res.status).toBe(201);
  return (await res.json()) as UploadAnswer;
}

/** Every receipt request the page makes, and how each was answered. */
function watchReceipts(page: Page): { statuses: number[] } {
  const seen = { statuses: [] as number[] };
  page.on('requestfinished', (request) => {
    if (!request.url().endsWith('/files/receipt')) return;
    void request.response().then((response) => seen.statuses.push(response?.status() ?? 0));
  });
  page.on('requestfailed', (request) => {
    if (request.url().endsWith('/files/receipt')) seen.statuses.push(0);
  });
  return seen;
}

/**
 * Advances the page's fake clock one receipt period at a time, `periods` times. Between steps a fetch of
 * the page's own goes out and back, so an answer already received has been handled before the next tick.
 */
async function runPeriods(page: Page, periods: number): Promise<void> {
  for (let i = 0; i < periods; i += 1) {
    await page.clock.runFor(RECEIPT_EVERY_MS);
    await page.evaluate(() => fetch('/static/app.css', { cache: 'no-store' }).then((r) => r.text()));
  }
}

/** Uploads through the page (with a long expiry, so the countdown stays out of the way) and waits for the result card. */
async function uploadFromPage(page: Page, url: string, uses: string): Promise<{ key: string }> {
  await page.goto(`${url}/`);
  await page.setInputFiles('#file', { name: 'report.txt', mimeType: 'text/plain', buffer: Buffer.from('quarterly numbers\n') });
  await page.selectOption('#expiry', '60');
  await page.selectOption('#uses', uses);
  await page.click('#upload-button');
  await page.locator('#result').waitFor({ state: 'visible' });
  return { key: (await page.textContent('#passphrase'))!.trim() };
}

describe('page hardening in real Chromium', () => {
  const stack = useBrowserStack();
  const { problems, newContext } = stack;

  it('the sender’s card keeps asking for the receipt through outages, and stops for good at a 404 (each would be a failed lookup)', async () => {
    const page = await (await newContext('sender-404')).newPage();
    await page.clock.install();
    await uploadFromPage(page, stack.app.url, '1');

    const answers = [503, 503, 404];
    const seen = watchReceipts(page);
    await page.route('**/files/receipt', async (route) => {
      const status = answers.shift() ?? 404;
      const code = status === 404 ? 'FILE_NOT_FOUND' : 'SERVICE_UNAVAILABLE';
      await route.fulfill({
        status,
        contentType: 'application/json',
        body: JSON.stringify({ error: { code, message: 'test', request_id: 'test' } }),
      });
    });

    // Two outages: polling goes on at its cadence.
    await runPeriods(page, 3);
    expect(seen.statuses).toEqual([503, 503, 404]);

    // Ten minutes more: at most the one request that may have been in flight when the 404 arrived.
    await runPeriods(page, 40);
    const afterNotFound = seen.statuses.slice(3);
    expect(afterNotFound.length).toBeLessThanOrEqual(1);
    // Nor does coming back to the tab ask again.
    await page.evaluate(() => document.dispatchEvent(new Event('visibilitychange')));
    await runPeriods(page, 1);
    expect(seen.statuses.slice(3 + afterNotFound.length)).toEqual([]);
    expect(problems).toEqual([]);
  });

  it('the sender’s card keeps asking slowly after a burn (the receipt may still change) and stops once it says deleted', async () => {
    const page = await (await newContext('sender-burned')).newPage();
    await page.clock.install();
    const { key } = await uploadFromPage(page, stack.app.url, '1');
    const seen = watchReceipts(page);

    // The one download, outside the page: the file burns.
    const download = await fetch(`${stack.app.url}/download`, { headers: { 'X-Key': key } });
    expect(download.status).toBe(200);
    await download.arrayBuffer();

    await page.clock.runFor(RECEIPT_EVERY_MS);
    await page.locator('#result.is-gone').waitFor();
    expect(await page.textContent('#result-heading')).toBe('File destroyed');
    expect(await page.textContent('#receipt-events')).toContain('completed at');
    expect(seen.statuses).toEqual([200]);
    // A burned file's receipt is asked for again, every four periods: each ask is a hit, not a failure.
    await runPeriods(page, 8);
    expect(seen.statuses.length).toBeGreaterThanOrEqual(2);
    expect(seen.statuses.every((status) => status === 200)).toBe(true);

    // Deleted (say, by the sender from another tab): that receipt is the last one asked for.
    await page.route('**/files/receipt', async (route) => {
      const real = await route.fetch();
      await route.fulfill({ response: real, json: { ...((await real.json()) as object), state: 'deleted' } });
    });
    let sent = 0;
    page.on('request', (request) => void (request.url().endsWith('/files/receipt') && (sent += 1)));
    const deleted = page.waitForResponse((response) => response.url().endsWith('/files/receipt'));
    await page.clock.runFor(4 * RECEIPT_EVERY_MS);
    await deleted;
    await runPeriods(page, 1); // the page has handled that answer
    const asked = sent;
    await runPeriods(page, 40);
    expect(sent).toBe(asked);
    expect(problems).toEqual([]);
  });

  it('“Skip to content” on the recipient page moves focus to main and keeps the file that was found', async () => {
    const upload = await uploadViaApi(stack.app.url, 'plans.txt', 'the plans\n');
    const page = await (await newContext('skip-link')).newPage();
    await page.goto(`${stack.app.url}/d#${upload.key}`);
    await page.locator('#file-card').waitFor({ state: 'visible' });
    expect(await page.textContent('#file-heading')).toBe('plans.txt');

    await page.evaluate(() => {
      (window as unknown as { hashChanged: Promise<void> }).hashChanged = new Promise<void>((resolve) =>
        window.addEventListener('hashchange', () => setTimeout(resolve, 0), { once: true }),
      );
    });
    await page.focus('a.skip-link');
    await page.keyboard.press('Enter');
    await page.evaluate(() => (window as unknown as { hashChanged: Promise<void> }).hashChanged);

    expect(await page.isVisible('#file-card')).toBe(true);
    expect(await page.isVisible('#lookup')).toBe(false);
    expect(await page.textContent('#lookup-error')).toBe('');
    expect(await page.textContent('#file-heading')).toBe('plans.txt');
    expect(await page.evaluate(() => document.activeElement?.id)).toBe('main');
    // The found file still downloads: the page kept its key.
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download-button')]);
    expect(download.suggestedFilename()).toBe('plans.txt');
    expect(problems).toEqual([]);
  });

  it('without JavaScript the upload page offers curl, and its form never puts the file name in a URL', async () => {
    const context = stack.adopt(await stack.browser.newContext({ javaScriptEnabled: false }));
    const page = await context.newPage();
    const requested: string[] = [];
    page.on('request', (request) => requested.push(`${request.method()} ${request.url()}`));
    await page.goto(`${stack.app.url}/`);
    const start = page.url();
    const noteShown = await page.isVisible('.notice');
    const formShown = await page.isVisible('#upload-form');

    // A submit, forced on the form even when it is hidden (an extension, an assistive tool), is a POST.
    await page.setInputFiles('#file', { name: 'secret-report.pdf', mimeType: 'application/pdf', buffer: Buffer.from('%PDF-1.4\n') });
    await Promise.all([
      page.waitForURL((url) => url.href !== start),
      page.locator('#upload-form').evaluate((form: HTMLFormElement) => form.requestSubmit()),
    ]);
    expect(requested.filter((line) => line.includes('file=') || line.includes('secret-report'))).toEqual([]);
    expect(page.url()).not.toContain('file=');
    expect(requested).toContain(`POST ${stack.app.url}/upload`);
    expect({ noteShown, formShown }).toEqual({ noteShown: true, formShown: false });
  });
});
