// Sequential little-endian reads from an open file with positioned, buffered reads, so a
// header can be parsed without loading the file. Every read first checks that the bytes exist
// (before `limit`) and reports through `fail` otherwise: nothing is allocated from an unchecked size.
import { readSync } from "node:fs";

const CHUNK = 64 * 1024;

export type Fail = (problem: string, offset: number) => never;

export class FileCursor {
  pos = 0;
  private buf: Buffer = Buffer.alloc(0);
  private bufStart = 0;
  private bufEnd = 0;

  /**
   * @param size the file's size in bytes
   * @param limit reads may not go past this offset (at most `size`; less to cap a header's length)
   */
  constructor(
    private readonly fd: number,
    readonly size: number,
    readonly limit: number,
    private readonly fail: Fail,
  ) {}

  /** Bytes left before the limit. */
  get remaining(): number {
    return this.limit - this.pos;
  }

  /** Throws (through `fail`) unless `n` more bytes can be read. */
  need(n: number, field: string): void {
    if (n <= this.remaining) return;
    if (this.limit < this.size) {
      this.fail(
        `${field} needs ${n} bytes, past the header limit of ${this.limit} bytes (maxHeaderBytes)`,
        this.pos,
      );
    }
    this.fail(
      `file is truncated: ${field} needs ${n} bytes but only ${Math.max(0, this.remaining)} remain (file is ${this.size} bytes)`,
      this.pos,
    );
  }

  private window(n: number, field: string): number {
    this.need(n, field);
    if (this.pos < this.bufStart || this.pos + n > this.bufEnd) this.fill(n);
    const at = this.pos - this.bufStart;
    this.pos += n;
    return at;
  }

  private fill(n: number): void {
    const len = Math.min(Math.max(n, CHUNK), this.size - this.pos);
    if (this.buf.length < len) this.buf = Buffer.allocUnsafe(Math.max(len, CHUNK));
    let got = 0;
    while (got < len) {
      const r = readSync(this.fd, this.buf, got, len - got, this.pos + got);
      if (r === 0)
        this.fail(`file ended at byte ${this.pos + got} while reading (did it shrink?)`, this.pos + got);
      got += r;
    }
    this.bufStart = this.pos;
    this.bufEnd = this.pos + len;
  }

  u8(field: string): number {
    return this.buf.readUInt8(this.window(1, field));
  }
  i8(field: string): number {
    return this.buf.readInt8(this.window(1, field));
  }
  u16(field: string): number {
    return this.buf.readUInt16LE(this.window(2, field));
  }
  i16(field: string): number {
    return this.buf.readInt16LE(this.window(2, field));
  }
  u32(field: string): number {
    return this.buf.readUInt32LE(this.window(4, field));
  }
  i32(field: string): number {
    return this.buf.readInt32LE(this.window(4, field));
  }
  f32(field: string): number {
    return this.buf.readFloatLE(this.window(4, field));
  }
  f64(field: string): number {
    return this.buf.readDoubleLE(this.window(8, field));
  }
  u64(field: string): bigint {
    return this.buf.readBigUInt64LE(this.window(8, field));
  }
  /** A u64 as a number when it is a safe integer (the common case, without a BigInt), else as a bigint. */
  u64Size(field: string): number | bigint {
    const at = this.window(8, field);
    const hi = this.buf.readUInt32LE(at + 4);
    if (hi < 0x200000) return hi * 0x100000000 + this.buf.readUInt32LE(at);
    return this.buf.readBigUInt64LE(at);
  }
  i64(field: string): bigint {
    return this.buf.readBigInt64LE(this.window(8, field));
  }
  /** The next `n` bytes decoded as UTF-8, bad sequences replaced by U+FFFD. */
  utf8(n: number, field: string): string {
    const at = this.window(n, field);
    return this.buf.toString("utf8", at, at + n);
  }
  /** A view of the next `n` bytes, valid until the next read. */
  bytes(n: number, field: string): Buffer {
    const at = this.window(n, field);
    return this.buf.subarray(at, at + n);
  }
}
