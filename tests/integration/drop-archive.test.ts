import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { archiveOverheadBound, crc32, crc32Table, zipArchive, type ArchiveEntry } from '../../app/uploads/drop-archive.js';
import { byName, digest, readWithPython, tempDir, testWithUnzip } from '../helpers/zips.js';

const run = promisify(execFile);

async function build(entries: { name: string; bytes: Buffer; maxSize?: number; chunk?: number }[]): Promise<Buffer> {
  async function* items(): AsyncGenerator<ArchiveEntry> {
    for (const e of entries) {
      const chunk = e.chunk ?? 65536;
      async function* data() {
        for (let at = 0; at < e.bytes.length; at += chunk) yield e.bytes.subarray(at, at + chunk);
      }
      yield { name: e.name, data: data(), maxSize: e.maxSize ?? e.bytes.length };
    }
  }
  const out: Buffer[] = [];
  for await (const piece of zipArchive({ entries: items(), modified: new Date('2026-11-23T12:00:00Z') })) out.push(piece);
  return Buffer.concat(out);
}

describe('CRC-32', () => {
  it('matches the check value and agrees between zlib and the table, chunk by chunk', () => {
    expect(crc32(Buffer.from('123456789'))).toBe(0xcbf43926);
    expect(crc32Table(Buffer.from('123456789'))).toBe(0xcbf43926);
    expect(crc32Table(Buffer.alloc(0))).toBe(0);
    const data = randomBytes(200_003);
    let running = 0;
    for (let at = 0; at < data.length; at += 7919) running = crc32Table(data.subarray(at, at + 7919), running);
    expect(running).toBe(crc32(data));
  });
});

describe('the drop archive writer', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await tempDir('archive');
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes stored entries with data descriptors that unzip, zipfile and zipdetails read, empty files included', async () => {
    const entries = [
      { name: 'a.txt', bytes: Buffer.from('hello\n') },
      { name: 'dir/ünïcødé 📷.bin', bytes: randomBytes(300_000), chunk: 1000 },
      { name: 'empty', bytes: Buffer.alloc(0) },
    ];
    const zip = path.join(dir, 'plain.zip');
    const bytes = await build(entries);
    await writeFile(zip, bytes);
    expect(bytes.length - 300_006).toBeLessThanOrEqual(archiveOverheadBound({ entries: 3, nameBytes: 30 }));
    expect(await readWithPython(zip)).toEqual(entries.map((e) => digest(e.name, e.bytes)));
    expect(await testWithUnzip(zip)).toContain('No errors detected');
    const { stdout } = await run('zipdetails', [zip]);
    expect(stdout).toContain("'Language Encoding'");
    expect(stdout).toContain('STREAMING DATA HEADER'); // the data descriptor, with its signature
    expect(stdout).not.toMatch(/ZIP64/);
  });

  it('declares ZIP64 in the local header of an entry that may pass 4 GiB, with 8-byte sizes in its descriptor', async () => {
    const entries = [
      { name: 'may-be-huge.bin', bytes: randomBytes(5000), maxSize: 2 ** 33 },
      { name: 'small.txt', bytes: Buffer.from('x') },
    ];
    const zip = path.join(dir, 'zip64-local.zip');
    await writeFile(zip, await build(entries));
    expect((await readWithPython(zip)).sort(byName)).toEqual(entries.map((e) => digest(e.name, e.bytes)).sort(byName));
    expect(await testWithUnzip(zip)).toContain('No errors detected');
    const { stdout } = await run('zipdetails', [zip]);
    expect(stdout).toMatch(/Extra ID #\d+ +0001 'ZIP64'/);
    expect(stdout).toMatch(/Compressed Length +0000000000001388/); // 5000 in the 8-byte descriptor
  });

  it('switches to the ZIP64 end records at 65,535 entries, the count a classic record cannot say', async () => {
    const entries = Array.from({ length: 65_535 }, (_, i) => ({ name: `e/${i}`, bytes: Buffer.from(String(i)) }));
    const bytes = await build(entries);
    expect(bytes.readUInt32LE(bytes.length - 22)).toBe(0x06054b50);
    expect(bytes.readUInt16LE(bytes.length - 22 + 10)).toBe(0xffff);
    expect(bytes.readUInt32LE(bytes.length - 42)).toBe(0x07064b50);
    const zip = path.join(dir, 'count.zip');
    await writeFile(zip, bytes);
    expect(await readWithPython(zip)).toHaveLength(65_535);
    const fewer = await build(entries.slice(0, 65_534));
    expect(fewer.readUInt16LE(fewer.length - 22 + 10)).toBe(65_534);
    expect(fewer.readUInt32LE(fewer.length - 42)).not.toBe(0x07064b50);
  });

  it('refuses an entry that grows past its declared maximum', async () => {
    await expect(build([{ name: 'liar.bin', bytes: Buffer.alloc(10), maxSize: 5 }])).rejects.toThrow(RangeError);
  });
});
