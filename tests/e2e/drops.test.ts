import { randomBytes } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PNG_BYTES } from '../helpers/files.js';
import { axeViolations, useBrowserStack } from '../helpers/browser.js';
import { byName, digest, extractWithUnzip, readWithPython, tempDir } from '../helpers/zips.js';

const ARTIFACTS = path.resolve(import.meta.dirname, '..', '..', 'test-artifacts');

describe('drops in real Chromium: a folder from the page, the list, one zip for the recipient', () => {
  const stack = useBrowserStack();
  const { problems, newContext: context } = stack;
  let work: string;

  beforeAll(async () => {
    await mkdir(ARTIFACTS, { recursive: true });
    work = await tempDir('e2e-drops');
  });
  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  it('uploads a nested folder through the folder picker; the recipient sees every name and size, and one click gives the zip', async () => {
    const folder = path.join(work, 'trip');
    const files = [
      { name: 'trip/itinerary.txt', bytes: Buffer.from('day 1: lake\nday 2: hills\n') },
      { name: 'trip/day 1/photo.png', bytes: Buffer.concat([PNG_BYTES, randomBytes(40_000)]) },
      { name: 'trip/day 1/notes/été.txt', bytes: Buffer.from('summer notes\n'.repeat(200)) },
      { name: 'trip/day 2/empty.bin', bytes: Buffer.alloc(0) },
    ];
    for (const f of files) {
      await mkdir(path.dirname(path.join(work, f.name)), { recursive: true });
      await writeFile(path.join(work, f.name), f.bytes);
    }
    const expected = files.map((f) => digest(f.name, f.bytes)).sort(byName);

    const findings: string[] = [];
    const sender = await (await context('sender')).newPage();
    await sender.goto(`${stack.app.url}/`);
    await sender.setInputFiles('#folder', folder);
    await expect.poll(() => sender.textContent('#file-name')).toBe('4 files');
    expect((await sender.locator('#chosen-list .entry-name').allTextContents()).sort()).toEqual(files.map((f) => f.name).sort());
    findings.push(...(await axeViolations(sender)).map((f) => `/ chosen: ${f}`));
    await sender.click('#upload-button');
    await sender.locator('#result').waitFor({ state: 'visible' });
    expect(await sender.textContent('#result-filename')).toBe('trip.zip');
    expect(await sender.textContent('#result-files-label')).toBe('4 files, sent as one zip');
    expect((await sender.locator('#result-files-list .entry-name').allTextContents()).sort()).toEqual(files.map((f) => f.name).sort());
    findings.push(...(await axeViolations(sender)).map((f) => `/ result: ${f}`));
    await sender.screenshot({ path: path.join(ARTIFACTS, 'drop-result-1280.png'), fullPage: true });
    const shareUrl = (await sender.textContent('#share-link'))!.trim();

    for (const width of [390]) {
      const phone = await (await context(`phone-${width}`, width)).newPage();
      await phone.goto(shareUrl);
      await phone.locator('#drop-contents').waitFor({ state: 'visible' });
      findings.push(...(await axeViolations(phone)).map((f) => `/d drop @${width}: ${f}`));
      await phone.screenshot({ path: path.join(ARTIFACTS, `drop-recipient-${width}.png`), fullPage: true });
    }

    const recipient = await (await context('recipient')).newPage();
    await recipient.goto(shareUrl);
    await expect.poll(() => recipient.textContent('#file-heading')).toBe('trip.zip');
    expect(await recipient.textContent('#contents-label')).toBe('4 files in this zip');
    const rows = await recipient
      .locator('#contents-list li')
      .evaluateAll((items) =>
        items.map((li) => [li.querySelector('.entry-name')?.textContent, li.querySelector('.entry-size')?.textContent]),
      );
    expect(rows.map(([name]) => name).sort()).toEqual(files.map((f) => f.name).sort());
    expect(rows.find(([name]) => name === 'trip/day 2/empty.bin')?.[1]).toBe('0 bytes');
    expect(await recipient.textContent('#download-button')).toMatch(/^Download all as zip \(/);
    findings.push(...(await axeViolations(recipient)).map((f) => `/d drop: ${f}`));

    const [download] = await Promise.all([recipient.waitForEvent('download'), recipient.click('#download-button')]);
    expect(download.suggestedFilename()).toBe('trip.zip');
    const zip = path.join(work, 'from-browser.zip');
    await download.saveAs(zip);
    expect((await readWithPython(zip)).sort(byName)).toEqual(expected);
    expect((await extractWithUnzip(zip, work)).files).toEqual(expected);

    expect(findings).toEqual([]);
    expect(problems).toEqual([]);
  });

  it('takes several files dropped on the drop zone and sends them as one drop', async () => {
    const page = await (await context('dropzone')).newPage();
    await page.goto(`${stack.app.url}/`);
    // A synthetic drop carries File objects (Chromium gives no directory entries to a script-made
    // DataTransfer, so the folder path of a real drop is the webkitGetAsEntry branch, not run here).
    const dataTransfer = await page.evaluateHandle(() => {
      const transfer = new DataTransfer();
      transfer.items.add(new File(['first file\n'], 'one.txt', { type: 'text/plain' }));
      transfer.items.add(new File(['second file\n'], 'two.txt', { type: 'text/plain' }));
      return transfer;
    });
    await page.dispatchEvent('#dropzone', 'drop', { dataTransfer });
    await expect.poll(() => page.textContent('#file-name')).toBe('2 files');
    await page.click('#upload-button');
    await page.locator('#result').waitFor({ state: 'visible' });
    expect(await page.textContent('#result-filename')).toBe('one-and-1-more.zip');
    expect(await page.locator('#result-files-list .entry-name').allTextContents()).toEqual(['one.txt', 'two.txt']);
    expect(problems).toEqual([]);
  });

  it('refuses, before uploading, more files than the server takes or more bytes in all', async () => {
    const page = await (await context('limits')).newPage();
    await page.goto(`${stack.app.url}/`);
    const tooMany = Array.from({ length: stack.app.config.maxFilesPerUpload + 1 }, (_, i) => ({
      name: `f${i}.txt`,
      mimeType: 'text/plain',
      buffer: Buffer.from(String(i)),
    }));
    await page.setInputFiles('#file', tooMany);
    await expect.poll(() => page.textContent('#upload-error')).toContain(`At most ${stack.app.config.maxFilesPerUpload} files`);
    const half = Math.ceil(stack.app.config.maxFileSize / 2) + 1;
    await page.setInputFiles('#file', [
      { name: 'a.bin', mimeType: 'application/octet-stream', buffer: Buffer.alloc(half) },
      { name: 'b.bin', mimeType: 'application/octet-stream', buffer: Buffer.alloc(half) },
    ]);
    await expect.poll(() => page.textContent('#upload-error')).toContain('for several files, their total');
    expect(problems).toEqual([]);
  });
});
