// What makes an object a quantization scheme, checked field by field so that a plugin that gets one
// wrong is told exactly what is missing; and a quick self-test of a scheme's encode, decode and cpu.dot.
import { compileCpuDot } from "./cpu-dot.ts";
import type { QuantScheme } from "./scheme.ts";

/** GGUF's own tensor type ids are below this; moec numbers schemes GGUF lacks from here in a file. */
export const CUSTOM_GGML_TYPE_BASE = 1024;

const FIELDS: [string, string][] = [
  ["name", "a lower-case name matching [a-z_][a-z0-9_]*, e.g. `nf4`"],
  ["blockSize", "elements per block, a positive integer"],
  ["blockBytes", "bytes per block, a positive integer"],
  ["description", "one line for `moec schemes` and `moec inspect`"],
  ["encode", "a function (src: Float32Array, dst: Uint8Array) => void"],
  ["decode", "a function (src: Uint8Array, dst: Float32Array) => void"],
  ["cpu.dot", "a string of TypeScript statements adding dot(row, x) to `acc` (see runtime/quant/scheme.ts)"],
];

const positiveInt = (v: unknown) => typeof v === "number" && Number.isInteger(v) && v > 0;

/** Why `x` is not a usable QuantScheme: one entry per missing or wrong field; empty when it is fine. */
export function schemeProblems(x: unknown): string[] {
  if (x === null || typeof x !== "object")
    return [`expected an object, got ${x === null ? "null" : typeof x}`];
  const s = x as Record<string, unknown>;
  const out: string[] = [];
  const bad = (field: string, got: unknown) => {
    const want = FIELDS.find(([f]) => f === field)![1];
    out.push(got === undefined ? `missing \`${field}\` (${want})` : `\`${field}\` must be ${want}`);
  };
  if (typeof s.name !== "string" || !/^[a-z_][a-z0-9_]*$/.test(s.name)) bad("name", s.name);
  if (!positiveInt(s.blockSize)) bad("blockSize", s.blockSize);
  if (!positiveInt(s.blockBytes)) bad("blockBytes", s.blockBytes);
  if (typeof s.description !== "string" || s.description.trim() === "" || /[\r\n]/.test(s.description))
    bad("description", s.description);
  if (typeof s.encode !== "function") bad("encode", s.encode);
  if (typeof s.decode !== "function") bad("decode", s.decode);
  const cpu = s.cpu as Record<string, unknown> | undefined;
  if (cpu === null || typeof cpu !== "object") bad("cpu.dot", undefined);
  else if (typeof cpu.dot !== "string" || cpu.dot.trim() === "") bad("cpu.dot", cpu.dot);
  else {
    try {
      new Function(
        "u8",
        "i8",
        "f32",
        "f16",
        "x",
        "row",
        "xo",
        `"use strict"; const NB = 1; let acc = 0;\n${cpu.dot}`,
      );
    } catch (e) {
      out.push(`\`cpu.dot\` is not valid JavaScript: ${(e as Error).message}`);
    }
  }
  if (s.ggmlType !== undefined) {
    const t = s.ggmlType;
    if (typeof t !== "number" || !Number.isInteger(t) || t < 0 || t >= CUSTOM_GGML_TYPE_BASE)
      out.push(
        `\`ggmlType\` must be one of GGUF's type ids (an integer below ${CUSTOM_GGML_TYPE_BASE}); leave it out for a scheme GGUF does not have`,
      );
  }
  return out;
}

/** Thrown for an object that is not a valid scheme; the message lists every problem. */
export class InvalidSchemeError extends Error {
  readonly exitCode = 1;
  constructor(
    where: string,
    readonly problems: string[],
  ) {
    super(`${where} is not a valid quantization scheme: ${problems.join("; ")}`);
  }
}

/**
 * Encodes four blocks of deterministic pseudo-Gaussian data and checks that decode gives finite values
 * near them and that cpu.dot agrees with dot(decode(row), x). Returns the problems found (empty: passed).
 */
export function selfTestScheme(s: QuantScheme): string[] {
  const nb = 4;
  const n = s.blockSize * nb;
  const src = new Float32Array(n);
  const x = new Float32Array(n);
  let seed = 12345;
  const rnd = () => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed / 2 ** 32 - 0.5;
  };
  for (let i = 0; i < n; i++) {
    src[i] = (rnd() + rnd() + rnd()) * 2;
    x[i] = rnd() * 2;
  }
  const q = new Uint8Array(new ArrayBuffer(Math.ceil((nb * s.blockBytes) / 4) * 4), 0, nb * s.blockBytes);
  const out: string[] = [];
  try {
    s.encode(src, q);
  } catch (e) {
    return [`encode threw on ${n} finite values: ${(e as Error).message}`];
  }
  const y = new Float32Array(n);
  try {
    s.decode(q, y);
  } catch (e) {
    return [`decode threw: ${(e as Error).message}`];
  }
  let err = 0;
  let sig = 0;
  for (let i = 0; i < n; i++) {
    if (!Number.isFinite(y[i])) return [`decode gave ${y[i]} at element ${i} for finite input`];
    err += (y[i]! - src[i]!) ** 2;
    sig += src[i]! ** 2;
  }
  if (err > sig)
    out.push(`decode(encode(w)) is further from w than 0 is (RMSE ${Math.sqrt(err / n).toFixed(3)})`);
  let want = 0;
  let scale = 0;
  for (let i = 0; i < n; i++) {
    want += y[i]! * x[i]!;
    scale += Math.abs(y[i]! * x[i]!);
  }
  try {
    const dot = compileCpuDot(s, nb);
    const got = dot(
      q,
      new Int8Array(q.buffer, 0, q.length),
      new Float32Array(q.buffer, 0, q.buffer.byteLength >>> 2),
      x,
      0,
      0,
    );
    if (!(Math.abs(got - want) <= 1e-4 * scale + 1e-6))
      out.push(`cpu.dot gives ${got} but dot(decode(row), x) is ${want}`);
  } catch (e) {
    out.push(`cpu.dot threw: ${(e as Error).message}`);
  }
  return out;
}
