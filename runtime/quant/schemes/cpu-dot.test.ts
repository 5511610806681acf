// The cpu.dot snippets, wrapped as a generated kernel wraps them (u8, i8, f32, f16, x, row, xo, NB and acc
// in scope), against dot(decode(row), x); and type-checked as the TypeScript they become.
import ts from "typescript";
import { describe, expect, it } from "vitest";
import { compileCpuDot } from "../cpu-dot.ts";
import { f16Table, schemes } from "../index.ts";
import type { QuantScheme } from "../scheme.ts";
import { gaussian, rng } from "../test-support.ts";

const ROWS = 3;
const ROW_ELEMENTS = 1024;

/** Weights with some outliers, an all-zero stretch and small values, so every decode branch runs. */
function weights(n: number, seed: number, wide: boolean): Float32Array {
  const w = gaussian(n, seed, 0.05);
  const r = rng(seed + 1);
  for (let i = 0; i < n; i++) if (r() < 0.01) w[i] = w[i]! * 300;
  w.fill(0, 256, 300);
  w[7] = 3e-6; // below 2⁻¹⁴: the second range of the bf16 dot
  w[8] = 1e-20; // below 2⁻⁴⁴: its slow path
  w[9] = wide ? -7e4 : -6e4; // beyond 2¹⁶ where the format has the range (f32, bf16); else within f16's
  return w;
}

function check(s: QuantScheme, bind: (dot: string) => (...args: unknown[]) => number): void {
  const nb = ROW_ELEMENTS / s.blockSize;
  const rowBytes = nb * s.blockBytes;
  const pad = 3 * s.blockBytes; // the rows start past some leading bytes, so row ≠ 0 everywhere
  const w = weights(ROWS * ROW_ELEMENTS, 11, s.name === "f32" || s.name === "bf16");
  const buf = new ArrayBuffer(pad + ROWS * rowBytes + 7);
  const u8 = new Uint8Array(buf);
  const i8 = new Int8Array(buf);
  const f32 = new Float32Array(buf, 0, buf.byteLength >> 2);
  s.encode(w, u8.subarray(pad, pad + ROWS * rowBytes));
  const xo = 17;
  const x = gaussian(xo + ROW_ELEMENTS + 4, 12);
  const fn = bind(s.cpu.dot);
  for (let r = 0; r < ROWS; r++) {
    const row = pad + r * rowBytes;
    const decoded = new Float32Array(ROW_ELEMENTS);
    s.decode(u8.subarray(row, row + rowBytes), decoded);
    let want = 0;
    let scale = 0;
    for (let i = 0; i < ROW_ELEMENTS; i++) {
      want += decoded[i]! * x[xo + i]!;
      scale += Math.abs(decoded[i]! * x[xo + i]!);
    }
    const acc0 = 0.25;
    const got = fn(u8, i8, f32, f16Table, x, row, xo, nb, acc0) - acc0;
    expect(Math.abs(got - want), `${s.name} row ${r}: ${got} vs ${want}`).toBeLessThanOrEqual(
      1e-4 * Math.max(Math.abs(want), 1e-3 * scale, 1e-30),
    );
  }
}

describe("cpu.dot", () => {
  for (const s of schemes()) {
    it(`${s.name}: equals dot(decode(row), x) over several rows at offsets`, () => {
      check(
        s,
        (dot) =>
          new Function(
            "u8",
            "i8",
            "f32",
            "f16",
            "x",
            "row",
            "xo",
            "NB",
            "acc",
            `${dot}\nreturn acc;`,
          ) as never,
      );
    });

    it(`${s.name}: the same through compileCpuDot with NB a literal`, () => {
      const nb = ROW_ELEMENTS / s.blockSize;
      const f = compileCpuDot(s, nb);
      const call = (
        u8: Uint8Array,
        i8: Int8Array,
        f32: Float32Array,
        _f16: Float32Array,
        x: Float32Array,
        row: number,
        xo: number,
        _nb: number,
        acc: number,
      ) => acc + f(u8, i8, f32, x, row, xo);
      check(s, () => call as never);
    });
  }

  it("every snippet type-checks as a kernel body under strict TypeScript", () => {
    const files = new Map<string, string>();
    for (const s of schemes()) {
      files.set(
        `/kernels/${s.name}.ts`,
        `export function k(u8: Uint8Array, i8: Int8Array, f32: Float32Array, f16: Float32Array, x: Float32Array, row: number, xo: number): number {\n  const NB = 4;\n  let acc = 0;\n  ${s.cpu.dot}\n  return acc;\n}\n`,
      );
    }
    const options: ts.CompilerOptions = {
      strict: true,
      target: ts.ScriptTarget.ES2022,
      noEmit: true,
      lib: ["lib.es2022.d.ts"],
      types: [],
    };
    const host = ts.createCompilerHost(options);
    const readFile = host.readFile.bind(host);
    const getSourceFile = host.getSourceFile.bind(host);
    host.readFile = (name) => files.get(name) ?? readFile(name);
    host.fileExists = (name) => files.has(name) || ts.sys.fileExists(name);
    host.getSourceFile = (name, lang, ...rest) => {
      const text = files.get(name);
      return text !== undefined ? ts.createSourceFile(name, text, lang) : getSourceFile(name, lang, ...rest);
    };
    const program = ts.createProgram([...files.keys()], options, host);
    const diagnostics = ts
      .getPreEmitDiagnostics(program)
      .map((d) => `${d.file?.fileName ?? ""}: ${ts.flattenDiagnosticMessageText(d.messageText, "\n")}`);
    expect(diagnostics).toEqual([]);
  });

  it("snippets allocate nothing and build no closures", () => {
    for (const s of schemes()) {
      expect(s.cpu.dot, s.name).not.toMatch(
        /\bnew\b|=>|\bfunction\b|\[\s*\]|\{\s*\}|Array\(|\.slice\(|\.subarray\(/,
      );
    }
  });
});
