import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { expectError, fileKeys, PNG_BYTES, redisDump, storedFiles, waitFor, type UploadAnswer } from '../helpers/files.js';
import { openMultipart } from '../helpers/multipart.js';
import { byName, digest, extractWithUnzip, readWithPython, tempDir, testWithUnzip, type ZipEntryDigest } from '../helpers/zips.js';

const run = promisify(execFile);
const CURL = '/usr/bin/curl';

interface DropAnswer extends UploadAnswer {
  files?: { name: string; size: number }[];
}

/** Downloads a key's bytes to a file with real curl (-fOJ, as the README says) and returns its path. */
async function curlDownload(app: TestApp, key: string, into: string): Promise<string> {
  const dir = await tempDir('dl');
  await run(CURL, ['-sS', '-fOJ', `${app.url}/download/${key}`], { cwd: dir });
  const [name] = await readdir(dir);
  const target = path.join(into, name!);
  await writeFile(target, await readFile(path.join(dir, name!)));
  await rm(dir, { recursive: true, force: true });
  return target;
}

/** Every byte the store holds for the app (fs: STORAGE_PATH and TEMP_PATH; s3: its objects and parts), to search for plaintext and names. */
async function storageBytes(app: TestApp): Promise<Buffer> {
  return Buffer.concat((await app.storage.raw()).map((item) => item.data));
}

/**
 * Waits until the drop's archive is being written: its blob is the second one the upload created (the
 * first file's is the first). Asked of the engine, not of the medium: an s3 archive this small is
 * still in memory, where an fs one is already a partial file.
 */
function archiveStarted(app: TestApp, since: number): Promise<unknown> {
  return waitFor(
    async () => app.storeCalls.slice(since).filter((call) => call.op === 'create').length,
    (creates) => creates >= 2,
    5_000,
    'the archive to be written',
  );
}

/** Nothing of a refused drop anywhere: no blob or partial on disk, no record, tombstone, blob key or lease in Redis. */
async function expectNothingLeft(app: TestApp): Promise<void> {
  expect(await storedFiles(app)).toEqual([]);
  expect(await fileKeys(app)).toEqual([]);
}

describe('several files in one drop (SPEC §10.7)', () => {
  let app: TestApp;
  let work: string;
  beforeAll(async () => {
    app = await startTestApp();
    work = await tempDir('drops');
  });
  afterAll(async () => {
    await app.close();
    await rm(work, { recursive: true, force: true });
  });

  it('curl -F with three files makes one drop; the zip opens in unzip and zipfile with every byte and path intact', async () => {
    const files = [
      { name: 'report.pdf', bytes: Buffer.concat([Buffer.from('%PDF-1.7\n'), randomBytes(300_000)]) },
      { name: 'photo.png', bytes: Buffer.concat([PNG_BYTES, randomBytes(70_000)]) },
      { name: 'notes été.txt', bytes: Buffer.from('PLAINTEXT-MARKER-notes\n'.repeat(500)) },
    ];
    const dir = path.join(work, 'curl-source');
    await mkdir(dir);
    for (const f of files) await writeFile(path.join(dir, f.name), f.bytes);
    const form = files.flatMap((f) => ['-F', `file=@${f.name}`]);
    const { stdout } = await run(CURL, ['-sS', '-f', ...form, '-F', 'uses=2', `${app.url}/upload`], { cwd: dir });
    const answer = JSON.parse(stdout) as DropAnswer;

    expect(answer.filename).toBe('report-and-2-more.zip');
    expect(answer.mime_type).toBe('application/zip');
    expect(answer.files).toEqual(files.map((f) => ({ name: f.name, size: f.bytes.length })));

    // Stored encrypted: no entry's bytes or name in any blob, and no name in Redis or the logs.
    const stored = await storageBytes(app);
    expect(stored.length).toBeGreaterThan(370_000);
    expect(stored.includes('PLAINTEXT-MARKER')).toBe(false);
    expect(stored.includes(files[0]!.bytes.subarray(100, 164))).toBe(false);
    expect(stored.includes('report')).toBe(false);
    const dump = await redisDump(app);
    for (const f of files) {
      expect(dump).not.toContain(f.name.split('.')[0]);
      expect(app.rawLogs.join('\n')).not.toContain(f.name.split('.')[0]);
    }

    // status and preview show the entries to the holder of the passphrase.
    const status = (await (await fetch(`${app.url}/status/${answer.key}`)).json()) as DropAnswer & { remaining_uses: number };
    expect(status).toMatchObject({ filename: 'report-and-2-more.zip', mime_type: 'application/zip', size: answer.size, remaining_uses: 2 });
    expect(status.files).toEqual(answer.files);
    const preview = (await (await fetch(`${app.url}/preview/${answer.key}`)).json()) as DropAnswer;
    expect(preview.files).toEqual(answer.files);

    const zip = await curlDownload(app, answer.key, work);
    expect(path.basename(zip)).toBe('report-and-2-more.zip');
    const expected = files.map((f) => digest(f.name, f.bytes)).sort(byName);
    expect((await readWithPython(zip)).sort(byName)).toEqual(expected);
    expect((await extractWithUnzip(zip, work)).files).toEqual(expected);
    expect(await testWithUnzip(zip)).toContain('No errors detected');
  });

  it("runs the README's drop example verbatim (only the address changes) and gets the entries back", async () => {
    const readme = await readFile(path.resolve(import.meta.dirname, '..', '..', 'README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('### Several files in one drop'));
    const command = /```sh\n([\s\S]*?)```/.exec(section)![1]!.trim();
    expect(command).toBe('curl -F file=@a.pdf -F file=@b.jpg http://127.0.0.1:8000/upload');
    const dir = path.join(work, 'readme');
    await mkdir(dir);
    await writeFile(path.join(dir, 'a.pdf'), Buffer.concat([Buffer.from('%PDF-1.7\n'), randomBytes(51_000)]));
    await writeFile(path.join(dir, 'b.jpg'), Buffer.concat([Buffer.from('ffd8ffe000104a464946', 'hex'), randomBytes(120_000)]));
    const { stdout } = await run('/bin/bash', ['-euo', 'pipefail', '-c', command.replaceAll('http://127.0.0.1:8000', app.url)], {
      cwd: dir,
    });
    const answer = JSON.parse(stdout) as DropAnswer;
    expect(answer).toMatchObject({
      filename: 'a-and-1-more.zip',
      mime_type: 'application/zip',
      files: [
        { name: 'a.pdf', size: 51_009 },
        { name: 'b.jpg', size: 120_010 },
      ],
    });
  });

  it('one file part is a single upload exactly as before: no files list, the bytes themselves', async () => {
    const bytes = Buffer.from('just one file\n');
    const form = new FormData();
    form.append('file', new Blob([bytes]), 'photos/2026/one.txt');
    const res = await fetch(`${app.url}/upload`, { method: 'POST', body: form });
    expect(res.status).toBe(201);
    const answer = (await res.json()) as DropAnswer;
    expect(answer.filename).toBe('one.txt');
    expect(answer.mime_type).toBe('text/plain');
    expect(answer.files).toBeUndefined();
    const status = (await (await fetch(`${app.url}/status/${answer.key}`)).json()) as DropAnswer;
    expect(status.files).toBeUndefined();
    const download = await fetch(`${app.url}/download/${answer.key}`);
    expect(Buffer.from(await download.arrayBuffer()).equals(bytes)).toBe(true);
  });

  it('keeps folder paths, sanitises hostile names, renames duplicates, and names the drop after a shared folder', async () => {
    const hostile: [string, string][] = [
      ['photos/2026/a.jpg', 'photos/2026/a.jpg'],
      ['photos/2026/a.jpg', 'photos/2026/a (2).jpg'],
      ['photos/2026/A.JPG', 'photos/2026/A (3).JPG'],
      ['photos/../../../etc/passwd', 'photos/etc/passwd'],
      ['/photos/absolute.txt', 'photos/absolute.txt'],
      ['C:\\photos\\windows\\drive.txt', 'photos/windows/drive.txt'],
      ['photos\\back\\slash.txt', 'photos/back/slash.txt'],
      ['photos/bidi\u202Egnp.exe', 'photos/bidignp.exe'],
      // Browsers send CR, LF and " as %0D, %0A and %22 (multer decodes them); raw controls are a 400 from busboy.
      ['photos/ctl%0D%0Aname\t.txt', 'photos/ctlname.txt'],
      ['photos/./.hidden', 'photos/hidden'],
      ['photos/con.txt', 'photos/_con.txt'],
      ['photos/what?: "yes" <no>|*.txt', 'photos/what__ _yes_ _no___.txt'],
      ['photos/trailing dots...', 'photos/trailing dots'],
      ['photos/2026', 'photos/2026 (2)'],
      ['photos/zero\u200Bwidth.txt', 'photos/zerowidth.txt'],
    ];
    const upload = openMultipart(`${app.url}/upload`);
    const contents = hostile.map((_, i) => Buffer.from(`entry ${i}\n`));
    for (const [i, [raw]] of hostile.entries()) await upload.file(raw, contents[i]!);
    await upload.end();
    const res = await upload.answer;
    expect(res.status, res.body).toBe(201);
    const answer = JSON.parse(res.body) as DropAnswer;
    expect(answer.filename).toBe('photos.zip');
    expect(answer.files!.map((f) => f.name)).toEqual(hostile.map(([, clean]) => clean));

    const zip = path.join(work, 'hostile.zip');
    await writeFile(zip, Buffer.from(await (await fetch(`${app.url}/download/${answer.key}`)).arrayBuffer()));
    const expected = hostile.map(([, clean], i) => digest(clean, contents[i]!)).sort(byName);
    expect((await readWithPython(zip)).sort(byName)).toEqual(expected);
    const extracted = await extractWithUnzip(zip, work);
    expect(extracted.files).toEqual(expected);
  });

  it('the text answer (Accept: text/plain) lists the entries after the usual lines', async () => {
    const dir = path.join(work, 'text-answer');
    await mkdir(dir);
    await writeFile(path.join(dir, 'a.txt'), 'aaa\n');
    await writeFile(path.join(dir, 'b.txt'), 'bbbb\n');
    const { stdout } = await run(
      CURL,
      ['-sS', '-f', '-H', 'Accept: text/plain', '-F', 'file=@a.txt', '-F', 'file=@b.txt', `${app.url}/upload`],
      { cwd: dir },
    );
    const lines = stdout.split('\n');
    expect(lines[0]).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/d#[a-z]+(-[a-z]+){3}$/);
    expect(lines).toContain('filename:   a-and-1-more.zip');
    expect(lines).toContain('files:      2');
    expect(lines).toContain('  4\ta.txt');
    expect(lines).toContain('  5\tb.txt');
  });

  it('takes 1,000 small files in one drop when MAX_FILES_PER_UPLOAD allows it', async () => {
    const many = await startTestApp({ env: { MAX_FILES_PER_UPLOAD: '1000' } });
    try {
      const form = new FormData();
      const expected: ZipEntryDigest[] = [];
      for (let i = 0; i < 1000; i += 1) {
        const name = `batch/${String(Math.floor(i / 100))}/file-${String(i).padStart(4, '0')}.txt`;
        const bytes = Buffer.from(`small file number ${i}\n`);
        form.append('file', new Blob([bytes]), name);
        expected.push(digest(name, bytes));
      }
      const res = await fetch(`${many.url}/upload`, { method: 'POST', body: form });
      expect(res.status).toBe(201);
      const answer = (await res.json()) as DropAnswer;
      expect(answer.filename).toBe('batch.zip');
      expect(answer.files).toHaveLength(1000);
      const zip = path.join(work, 'thousand.zip');
      await writeFile(zip, Buffer.from(await (await fetch(`${many.url}/download/${answer.key}`)).arrayBuffer()));
      expect(await readWithPython(zip)).toEqual(expected);
      expect((await extractWithUnzip(zip, work)).files).toEqual([...expected].sort(byName));

      // One more than allowed is refused before anything is kept.
      const over = new FormData();
      for (let i = 0; i < 1001; i += 1) over.append('file', new Blob([`${i}`]), `f${i}.txt`);
      const refused = await expectError(await fetch(`${many.url}/upload`, { method: 'POST', body: over }), 400, 'VALIDATION_FAILED');
      expect(refused.error.details).toEqual([{ field: 'file', message: 'At most 1000 files can be sent in one upload.' }]);
      expect(
        await waitFor(
          () => storedFiles(many),
          (f) => f.length === 1,
        ),
      ).toHaveLength(1); // the drop above
    } finally {
      await many.close();
    }
  });
});

describe('a drop and the pre-derived key pool (SPEC §10.5)', () => {
  it("takes one pooled passphrase for the whole drop: the archive takes over the first file's", async () => {
    const app = await startTestApp({ env: { KDF_POOL_SIZE: '4' } });
    try {
      const pool = app.deps.pool!;
      pool.start();
      await waitFor(
        async () => pool.stats().size,
        (n) => n === 4,
        20_000,
        'the pool to fill',
      );
      const before = pool.stats();
      const form = new FormData();
      for (const name of ['a.txt', 'b.txt', 'c.txt']) form.append('file', new Blob([`${name}\n`]), name);
      const res = await fetch(`${app.url}/upload`, { method: 'POST', body: form });
      expect(res.status).toBe(201);
      const answer = (await res.json()) as DropAnswer;
      const after = pool.stats();
      expect({ hits: after.hits - before.hits, misses: after.misses - before.misses }).toEqual({ hits: 1, misses: 0 });
      const status = (await (await fetch(`${app.url}/status/${answer.key}`)).json()) as DropAnswer;
      expect(status.files?.map((f) => f.name)).toEqual(['a.txt', 'b.txt', 'c.txt']);
    } finally {
      await app.close();
    }
  });
});

describe('a drop that breaks a limit leaves nothing behind', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp({
      env: { MAX_FILE_SIZE: String(1024 * 1024), ALLOWED_MIME_TYPES: 'image/png,text/plain', UPLOAD_STALL_SECONDS: '1' },
    });
  });
  afterAll(async () => {
    await app.close();
  });

  it('one entry of a refused type refuses the whole drop: 415, nothing on disk or in Redis', async () => {
    const since = app.storeCalls.length;
    const upload = openMultipart(`${app.url}/upload`);
    await upload.file('a.png', Buffer.concat([PNG_BYTES, randomBytes(200_000)]));
    await upload.file('b.txt', Buffer.from('hello\n'.repeat(1000)));
    await archiveStarted(app, since);
    // The refused entry: a PDF, detected by its content whatever its name says.
    await upload.file('c.txt', Buffer.concat([Buffer.from('%PDF-1.7\n'), randomBytes(5000)]));
    // Refused as soon as its first bytes were seen: the first file and the partial archive are gone
    // while the client is still sending.
    await upload.data(randomBytes(64 * 1024));
    await waitFor(
      () => storedFiles(app),
      (f) => f.length === 0,
      5_000,
      'the partial drop to be removed',
    );
    await upload.file('d.txt', Buffer.from('never stored\n'));
    await upload.end();
    const res = await upload.answer;
    expect(res.status, res.body).toBe(415);
    expect(JSON.parse(res.body)).toMatchObject({ error: { code: 'UNSUPPORTED_MEDIA_TYPE' } });
    await expectNothingLeft(app);
  });

  it('a drop over MAX_FILE_SIZE in total is refused mid-stream: 413, nothing on disk or in Redis', async () => {
    const since = app.storeCalls.length;
    const upload = openMultipart(`${app.url}/upload`);
    await upload.file('one.png', Buffer.concat([PNG_BYTES, randomBytes(400 * 1024)]));
    await upload.file('two.png', Buffer.concat([PNG_BYTES, randomBytes(400 * 1024)]));
    await archiveStarted(app, since);
    await upload.startFile('three.png');
    await upload.data(PNG_BYTES);
    let sent = 0;
    // Past the total: refused while the part is still streaming; the partial goes at once.
    while (sent < 512 * 1024) {
      await upload.data(randomBytes(64 * 1024));
      sent += 64 * 1024;
    }
    await waitFor(
      () => storedFiles(app),
      (f) => f.length === 0,
      5_000,
      'the partial drop to be removed',
    );
    await upload.data(randomBytes(1024 * 1024));
    await upload.end();
    const res = await upload.answer;
    expect(res.status, res.body).toBe(413);
    expect(JSON.parse(res.body)).toMatchObject({ error: { code: 'FILE_TOO_LARGE', max_bytes: 1024 * 1024 } });
    await expectNothingLeft(app);
  });

  it('a drop whose client stalls in its third file is cut off (408) and leaves nothing', async () => {
    const started = Date.now();
    const upload = openMultipart(`${app.url}/upload`);
    await upload.file('one.txt', Buffer.from('first\n'));
    await upload.file('two.txt', Buffer.from('second\n'));
    await upload.startFile('three.txt');
    await upload.data('the client stops here');
    const res = await upload.answer;
    expect(res.status, res.body).toBe(408);
    expect(Date.now() - started).toBeLessThan(5_000);
    upload.abort();
    await expectNothingLeft(app);
  });

  it('a drop whose client hangs up mid-way leaves nothing', async () => {
    const completedBefore = app.logs.filter((l) => l.event === 'request_completed').length;
    const since = app.storeCalls.length;
    const upload = openMultipart(`${app.url}/upload`);
    await upload.file('one.txt', Buffer.from('first\n'));
    await upload.startFile('two.txt');
    await upload.data('x'.repeat(100_000));
    await archiveStarted(app, since);
    upload.abort();
    await waitFor(
      async () => app.logs.filter((l) => l.event === 'request_completed').length,
      (n) => n > completedBefore,
      5_000,
      'the request to end',
    );
    await waitFor(
      () => storedFiles(app),
      (f) => f.length === 0,
      5_000,
      'the partials to go',
    );
    await expectNothingLeft(app);
  });
});

describe('a drop that needs ZIP64', () => {
  let app: TestApp;
  let work: string;
  beforeAll(async () => {
    app = await startTestApp({ env: { MAX_FILES_PER_UPLOAD: '70000' } });
    work = await tempDir('zip64');
  });
  afterAll(async () => {
    await app.close();
    await rm(work, { recursive: true, force: true });
  });

  it('65,536 entries through the real upload path: ZIP64 end records, and unzip and zipfile open it', { timeout: 120_000 }, async () => {
    const COUNT = 65_536; // one more than the 16-bit entry count can say
    const entries = Array.from({ length: COUNT }, (_, i) => ({
      filename: `many/${String(Math.floor(i / 1000)).padStart(2, '0')}/${String(i).padStart(5, '0')}.txt`,
      bytes: Buffer.from(`${i}\n`),
    }));
    const upload = openMultipart(`${app.url}/upload`);
    await upload.files(entries);
    await upload.end();
    const res = await upload.answer;
    expect(res.status, res.body).toBe(201);
    const answer = JSON.parse(res.body) as DropAnswer;
    expect(answer.filename).toBe('many.zip');
    expect(answer.files).toHaveLength(COUNT);

    const zip = path.join(work, 'many.zip');
    const bytes = Buffer.from(await (await fetch(`${app.url}/download/${answer.key}`)).arrayBuffer());
    await writeFile(zip, bytes);
    // The end of the archive: ZIP64 end record, its locator, then the classic record saying "see ZIP64".
    const end = bytes.subarray(bytes.length - 22);
    expect(end.readUInt32LE(0)).toBe(0x06054b50);
    expect(end.readUInt16LE(10)).toBe(0xffff);
    const locator = bytes.subarray(bytes.length - 42, bytes.length - 22);
    expect(locator.readUInt32LE(0)).toBe(0x07064b50);
    const record = bytes.subarray(Number(locator.readBigUInt64LE(8)));
    expect(record.readUInt32LE(0)).toBe(0x06064b50);
    expect(record.readBigUInt64LE(32)).toBe(BigInt(COUNT));

    const tested = await testWithUnzip(zip);
    expect(tested).toContain('No errors detected');
    expect(tested.match(/^ {4}testing: .* OK$/gm)).toHaveLength(COUNT);
    const read = await readWithPython(zip);
    expect(read).toHaveLength(COUNT);
    expect(read[COUNT - 1]).toEqual(digest(entries[COUNT - 1]!.filename, entries[COUNT - 1]!.bytes));
  });
});
