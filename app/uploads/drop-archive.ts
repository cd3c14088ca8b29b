/**
 * A streaming ZIP writer for drops (SPEC §10.7; docs/DECISIONS.md "Drops" says why it is ours and not
 * a library): stored entries only, UTF-8 names, every entry's size and CRC-32 learnt while its bytes
 * stream through and written after them in a data descriptor, ZIP64 only where the format needs it.
 * It holds one small record per entry (for the central directory) and never a file's bytes.
 * Structure and field order follow PKWARE's APPNOTE 6.3 (§4.3, §4.4, §4.5.3).
 */
import zlib from 'node:zlib';

export interface ArchiveEntry {
  /** A safe relative path with `/` separators (drop.models.ts makes it). */
  name: string;
  data: AsyncIterable<Buffer>;
  /**
   * The most bytes this entry may hold. Above 4 GiB − 2 its local header carries a ZIP64 field, so
   * that its data descriptor's 8-byte sizes are what a reader expects (APPNOTE §4.3.9.2).
   */
  maxSize: number;
  /** Told once the entry's bytes and its data descriptor have been produced. */
  onWritten?: (written: { size: number; crc32: number }) => void;
}

const SIG_LOCAL = 0x04034b50;
const SIG_DESCRIPTOR = 0x08074b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_ZIP64_END = 0x06064b50;
const SIG_ZIP64_LOCATOR = 0x07064b50;
const SIG_END = 0x06054b50;

// Bit 3: sizes and CRC follow the data in a descriptor. Bit 11: the name is UTF-8.
const FLAGS = 0x0008 | 0x0800;
const STORED = 0;
const VERSION_DEFAULT = 20;
const VERSION_ZIP64 = 45;
/** UNIX (3) in the high byte, so unzip applies the mode bits of the external attributes. */
const MADE_BY = (3 << 8) | VERSION_ZIP64;
const FILE_MODE = 0o100644;

/** A 16-bit count, or a 32-bit size/offset, at or above this is written as "see the ZIP64 record". */
const MAX16 = 0xffff;
const MAX32 = 0xffffffff;

const LOCAL_FIXED = 30;
const DESCRIPTOR = 16;
const DESCRIPTOR_ZIP64 = 24;
const CENTRAL_FIXED = 46;
const TIMESTAMP_EXTRA = 9; // 0x5455 "UT": flags + modification time, in UTC
const ZIP64_LOCAL_EXTRA = 20; // 0x0001 with both sizes
const ZIP64_CENTRAL_EXTRA_MAX = 28; // 0x0001 with both sizes and the offset
const END = 22;
const ZIP64_END = 56;
const ZIP64_LOCATOR = 20;

/** Longest entry name, in UTF-8 bytes, the 16-bit length field can hold. */
const MAX_NAME_BYTES = MAX16;

/**
 * The archive's size can exceed its entries' total by at most this much: an upper bound the upload
 * pipeline uses as the archive's own size limit, so MAX_FILE_SIZE stays a limit on the files.
 */
export function archiveOverheadBound(input: { entries: number; nameBytes: number }): number {
  const perEntry =
    LOCAL_FIXED +
    TIMESTAMP_EXTRA +
    ZIP64_LOCAL_EXTRA +
    DESCRIPTOR_ZIP64 +
    CENTRAL_FIXED +
    TIMESTAMP_EXTRA +
    ZIP64_CENTRAL_EXTRA_MAX +
    2 * input.nameBytes;
  return input.entries * perEntry + ZIP64_END + ZIP64_LOCATOR + END;
}

/** CRC-32 (ISO-HDLC, as ZIP uses): zlib's native one (Node ≥ 20.15) or a table, for older Node 20. */
export const crc32: (data: Uint8Array, value?: number) => number = (zlib as Partial<typeof zlib>).crc32 ?? crc32Table;

const TABLE = new Uint32Array(256).map((_, n) => {
  let c = n;
  for (let k = 0; k < 8; k += 1) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

export function crc32Table(data: Uint8Array, value = 0): number {
  let c = ~value >>> 0;
  for (const byte of data) c = (TABLE[(c ^ byte) & 0xff] as number) ^ (c >>> 8);
  return ~c >>> 0;
}

/** MS-DOS date and time (local fields, 2-second steps, 1980..2107); the UT field carries the exact time. */
function dosDateTime(date: Date): { date: number; time: number } {
  const year = Math.min(Math.max(date.getUTCFullYear(), 1980), 2107);
  return {
    date: ((year - 1980) << 9) | ((date.getUTCMonth() + 1) << 5) | date.getUTCDate(),
    time: (date.getUTCHours() << 11) | (date.getUTCMinutes() << 5) | (date.getUTCSeconds() >> 1),
  };
}

function timestampExtra(date: Date): Buffer {
  const extra = Buffer.alloc(TIMESTAMP_EXTRA);
  extra.writeUInt16LE(0x5455, 0);
  extra.writeUInt16LE(5, 2);
  extra.writeUInt8(1, 4); // modification time present
  extra.writeUInt32LE(Math.min(Math.max(Math.floor(date.getTime() / 1000), 0), MAX32), 5);
  return extra;
}

interface Written {
  name: Buffer;
  offset: number;
  size: number;
  crc32: number;
  zip64Local: boolean;
}

function localHeader(entry: { name: Buffer; zip64: boolean }, when: { date: number; time: number }, stamp: Buffer): Buffer {
  const extraLength = stamp.length + (entry.zip64 ? ZIP64_LOCAL_EXTRA : 0);
  const header = Buffer.alloc(LOCAL_FIXED + entry.name.length + extraLength);
  header.writeUInt32LE(SIG_LOCAL, 0);
  header.writeUInt16LE(entry.zip64 ? VERSION_ZIP64 : VERSION_DEFAULT, 4);
  header.writeUInt16LE(FLAGS, 6);
  header.writeUInt16LE(STORED, 8);
  header.writeUInt16LE(when.time, 10);
  header.writeUInt16LE(when.date, 12);
  // CRC and sizes stay zero (bit 3); with a ZIP64 field the sizes say "see the field" (§4.5.3).
  if (entry.zip64) {
    header.writeUInt32LE(MAX32, 18);
    header.writeUInt32LE(MAX32, 22);
  }
  header.writeUInt16LE(entry.name.length, 26);
  header.writeUInt16LE(extraLength, 28);
  entry.name.copy(header, LOCAL_FIXED);
  stamp.copy(header, LOCAL_FIXED + entry.name.length);
  if (entry.zip64) {
    const at = LOCAL_FIXED + entry.name.length + stamp.length;
    header.writeUInt16LE(0x0001, at);
    header.writeUInt16LE(16, at + 2); // both sizes, zero here: the descriptor has them
  }
  return header;
}

/** With the signature: macOS Archive Utility needs it, and every reader accepts it (§4.3.9.3). */
function dataDescriptor(entry: Written): Buffer {
  const descriptor = Buffer.alloc(entry.zip64Local ? DESCRIPTOR_ZIP64 : DESCRIPTOR);
  descriptor.writeUInt32LE(SIG_DESCRIPTOR, 0);
  descriptor.writeUInt32LE(entry.crc32, 4);
  if (entry.zip64Local) {
    descriptor.writeBigUInt64LE(BigInt(entry.size), 8);
    descriptor.writeBigUInt64LE(BigInt(entry.size), 16);
  } else {
    descriptor.writeUInt32LE(entry.size, 8);
    descriptor.writeUInt32LE(entry.size, 12);
  }
  return descriptor;
}

function centralHeader(entry: Written, when: { date: number; time: number }, stamp: Buffer): Buffer {
  // Only the fields that overflow go to the ZIP64 field, in the order the spec fixes.
  const big = [
    entry.size >= MAX32 ? entry.size : null,
    entry.size >= MAX32 ? entry.size : null,
    entry.offset >= MAX32 ? entry.offset : null,
  ].filter((v): v is number => v !== null);
  const zip64Length = big.length > 0 ? 4 + 8 * big.length : 0;
  const extraLength = stamp.length + zip64Length;
  const header = Buffer.alloc(CENTRAL_FIXED + entry.name.length + extraLength);
  header.writeUInt32LE(SIG_CENTRAL, 0);
  header.writeUInt16LE(MADE_BY, 4);
  header.writeUInt16LE(big.length > 0 || entry.zip64Local ? VERSION_ZIP64 : VERSION_DEFAULT, 6);
  header.writeUInt16LE(FLAGS, 8);
  header.writeUInt16LE(STORED, 10);
  header.writeUInt16LE(when.time, 12);
  header.writeUInt16LE(when.date, 14);
  header.writeUInt32LE(entry.crc32, 16);
  header.writeUInt32LE(Math.min(entry.size, MAX32), 20);
  header.writeUInt32LE(Math.min(entry.size, MAX32), 24);
  header.writeUInt16LE(entry.name.length, 28);
  header.writeUInt16LE(extraLength, 30);
  // comment length, disk number start and internal attributes stay zero
  header.writeUInt32LE((FILE_MODE << 16) >>> 0, 38);
  header.writeUInt32LE(Math.min(entry.offset, MAX32), 42);
  entry.name.copy(header, CENTRAL_FIXED);
  stamp.copy(header, CENTRAL_FIXED + entry.name.length);
  if (zip64Length > 0) {
    let at = CENTRAL_FIXED + entry.name.length + stamp.length;
    header.writeUInt16LE(0x0001, at);
    header.writeUInt16LE(zip64Length - 4, at + 2);
    at += 4;
    for (const value of big) {
      header.writeBigUInt64LE(BigInt(value), at);
      at += 8;
    }
  }
  return header;
}

function endRecords(input: { count: number; directoryOffset: number; directorySize: number }): Buffer[] {
  const { count, directoryOffset, directorySize } = input;
  const records: Buffer[] = [];
  const zip64 = count >= MAX16 || directoryOffset >= MAX32 || directorySize >= MAX32;
  if (zip64) {
    const record = Buffer.alloc(ZIP64_END);
    record.writeUInt32LE(SIG_ZIP64_END, 0);
    record.writeBigUInt64LE(BigInt(ZIP64_END - 12), 4); // size of the rest of the record
    record.writeUInt16LE(MADE_BY, 12);
    record.writeUInt16LE(VERSION_ZIP64, 14);
    // disk numbers stay zero
    record.writeBigUInt64LE(BigInt(count), 24);
    record.writeBigUInt64LE(BigInt(count), 32);
    record.writeBigUInt64LE(BigInt(directorySize), 40);
    record.writeBigUInt64LE(BigInt(directoryOffset), 48);
    const locator = Buffer.alloc(ZIP64_LOCATOR);
    locator.writeUInt32LE(SIG_ZIP64_LOCATOR, 0);
    locator.writeBigUInt64LE(BigInt(directoryOffset + directorySize), 8);
    locator.writeUInt32LE(1, 16); // total number of disks
    records.push(record, locator);
  }
  const end = Buffer.alloc(END);
  end.writeUInt32LE(SIG_END, 0);
  end.writeUInt16LE(Math.min(count, MAX16), 8);
  end.writeUInt16LE(Math.min(count, MAX16), 10);
  end.writeUInt32LE(Math.min(directorySize, MAX32), 12);
  end.writeUInt32LE(Math.min(directoryOffset, MAX32), 16);
  records.push(end);
  return records;
}

/**
 * The archive's bytes, entry after entry as `entries` yields them, then the central directory. Pull
 * it (e.g. `Readable.from`): an entry's data is read only as fast as the archive is consumed.
 */
export async function* zipArchive(input: {
  entries: AsyncIterable<ArchiveEntry>;
  modified: Date;
}): AsyncGenerator<Buffer, void, undefined> {
  const when = dosDateTime(input.modified);
  const stamp = timestampExtra(input.modified);
  const written: Written[] = [];
  let offset = 0;

  for await (const entry of input.entries) {
    const name = Buffer.from(entry.name, 'utf8');
    if (name.length === 0 || name.length > MAX_NAME_BYTES) throw new RangeError('zip entry name must be 1..65535 UTF-8 bytes');
    const zip64Local = entry.maxSize >= MAX32;
    const header = localHeader({ name, zip64: zip64Local }, when, stamp);
    const record: Written = { name, offset, size: 0, crc32: 0, zip64Local };
    offset += header.length;
    yield header;
    for await (const chunk of entry.data) {
      if (chunk.length === 0) continue;
      record.size += chunk.length;
      if (record.size > entry.maxSize) throw new RangeError('zip entry is larger than its declared maximum');
      record.crc32 = crc32(chunk, record.crc32);
      yield chunk;
    }
    offset += record.size;
    const descriptor = dataDescriptor(record);
    offset += descriptor.length;
    yield descriptor;
    written.push(record);
    entry.onWritten?.({ size: record.size, crc32: record.crc32 });
  }

  const directoryOffset = offset;
  for (const record of written) {
    const header = centralHeader(record, when, stamp);
    offset += header.length;
    yield header;
  }
  yield* endRecords({ count: written.length, directoryOffset, directorySize: offset - directoryOffset });
}
