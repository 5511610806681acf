// The gpujs backend's kernels: each fused op becomes one or more gpu.js kernel functions (JavaScript that
// gpu.js translates to WGSL in its `webgpu` mode and to WebAssembly SIMD in its `webasm` mode), specialized
// with the op's shapes as gpu.js `constants`. A kernel's source in the GpuProgram is a JSON GjKernelSpec
// (runtime/gpu/gpujs-spec.ts): its parts, what each reads, where the result goes. Weights arrive as packed
// bytes, three to an f32 (runtime/gpu/gpujs-pack.ts); each scheme's `gpujs` piece decodes its blocks
// inline, with the byte/half/float macros expanded here.
import type { GjArg, GjKernelSpec, GjPart } from "../../../runtime/gpu/gpujs-spec.ts";
import { getScheme } from "../../../runtime/quant/registry.ts";
import type { GpuJsKernel, QuantScheme } from "../../../runtime/quant/scheme.ts";
import { registerGpuKernels } from "../gpu/backends.ts";
import type { GpuKernelSet, KernelUse, LinearKind } from "../gpu/program.ts";
import { constName } from "../kernels.ts";

/** A scheme without a gpujs piece cannot run on the gpujs backend: names the scheme and the backend. */
export class NoGpuJsError extends Error {
  readonly exitCode = 2;
  constructor(readonly scheme: string) {
    super(
      `quantization scheme \`${scheme}\` has no gpujs piece, so the gpujs backend cannot run it: give the scheme a \`gpujs\` field (see runtime/quant/scheme.ts) or run with --backend cpu`,
    );
  }
}

function schemeOf(name: string): QuantScheme & { gpujs: GpuJsKernel } {
  const s = getScheme(name);
  if (!s.gpujs) throw new NoGpuJsError(name);
  return s as QuantScheme & { gpujs: GpuJsKernel };
}

/** A number as a literal gpu.js parses as a float (never in exponent form). */
export function lit(v: number): string {
  if (!Number.isFinite(v)) throw new Error(`not a finite constant: ${v}`);
  let s = String(v);
  if (/e/i.test(s)) s = v.toFixed(20).replace(/0+$/, "");
  return /\./.test(s) ? s : `${s}.0`;
}

/** The arguments of a macro call starting at text[i] (just after its "("): name and expression. */
function macroArgs(text: string, i: number): { name: string; expr: string; end: number } {
  let depth = 1;
  let j = i;
  let comma = -1;
  for (; j < text.length && depth > 0; j++) {
    const c = text[j];
    if (c === "(") depth++;
    else if (c === ")") depth--;
    else if (c === "," && depth === 1 && comma < 0) comma = j;
  }
  if (depth !== 0 || comma < 0)
    throw new Error(`a gpujs macro without its two arguments: ${text.slice(i - 5, i + 40)}`);
  let end = j;
  if (text[end] === ";") end++;
  return { name: text.slice(i, comma).trim(), expr: text.slice(comma + 1, j - 1).trim(), end };
}

/** `@u8(n, e)`: n = the byte at byte offset e of weight `w` (three bytes per f32 word, exact in f32). */
function u8(w: string, n: string, e: string): string {
  // f32 division by 3 may be off by one ulp on a GPU: the remainder puts the word index right.
  return [
    `let ${n}_q = Math.floor((${e}) / 3);`,
    `let ${n}_r = (${e}) - ${n}_q * 3;`,
    `if (${n}_r < -0.5) { ${n}_q = ${n}_q - 1; ${n}_r = ${n}_r + 3; }`,
    `if (${n}_r > 2.5) { ${n}_q = ${n}_q + 1; ${n}_r = ${n}_r - 3; }`,
    `let ${n} = ${w}[${n}_q];`,
    `if (${n}_r > 1.5) { ${n} = Math.floor(${n} / 65536); } else { if (${n}_r > 0.5) { ${n} = Math.floor(${n} / 256); } }`,
    `${n} = ${n} % 256;`,
  ].join("\n");
}

function f16(w: string, n: string, e: string): string {
  return [
    u8(w, `${n}_lo`, e),
    u8(w, `${n}_hi`, `(${e}) + 1`),
    `const ${n}_e = Math.floor(${n}_hi / 4) % 32;`,
    `const ${n}_m = (${n}_hi % 4) * 256 + ${n}_lo;`,
    `let ${n} = ${n}_m * Math.pow(2, -24);`,
    `if (${n}_e > 0.5) { ${n} = (1 + ${n}_m / 1024) * Math.pow(2, ${n}_e - 15); }`,
    `if (${n}_hi > 127.5) { ${n} = -${n}; }`,
  ].join("\n");
}

function f32(w: string, n: string, e: string): string {
  return [
    u8(w, `${n}_b0`, e),
    u8(w, `${n}_b1`, `(${e}) + 1`),
    u8(w, `${n}_b2`, `(${e}) + 2`),
    u8(w, `${n}_b3`, `(${e}) + 3`),
    `const ${n}_e = (${n}_b3 % 128) * 2 + Math.floor(${n}_b2 / 128);`,
    `const ${n}_m = (${n}_b2 % 128) * 65536 + ${n}_b1 * 256 + ${n}_b0;`,
    `let ${n} = (${n}_m / 8388608) * Math.pow(2, -126);`,
    `if (${n}_e > 0.5) { ${n} = (1 + ${n}_m / 8388608) * Math.pow(2, ${n}_e - 127); }`,
    `if (${n}_b3 > 127.5) { ${n} = -${n}; }`,
  ].join("\n");
}

/** Expands the byte/half/float macros over weight `w`, after `$name`s were renamed. */
export function expandMacros(text: string, w: string): string {
  const re = /@(u8|f16|f32)\(/g;
  let out = "";
  let last = 0;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    const { name, expr, end } = macroArgs(text, m.index + m[0].length);
    out += text.slice(last, m.index);
    out += (m[1] === "u8" ? u8 : m[1] === "f16" ? f16 : f32)(w, name, expressionOf(expr, w));
    last = end;
    re.lastIndex = end;
  }
  return out + text.slice(last);
}

const expressionOf = (e: string, _w: string) => e;

/** A piece's text for one use: `$name` → `name_<site>`, then the macros over weight `w`. */
export function specialize(text: string, site: string, w: string): string {
  return expandMacros(text.replace(/\$([A-Za-z_][A-Za-z0-9_]*)/g, `$1_${site}`), w);
}

/** A name for what the arg is called inside a kernel function, and (for arena args) its offset. */
type Named = [name: string, arg: GjArg];

export class GpuJsKernels implements GpuKernelSet {
  readonly backend = "gpujs";
  readonly sources = new Map<string, string>();
  private site = 0;

  private add(name: string, make: () => GjKernelSpec, perGroup = 64): KernelUse {
    if (!this.sources.has(name)) {
      this.site = 0;
      this.sources.set(name, JSON.stringify(make()));
    }
    return { name, perGroup };
  }

  /** A part: its function from the body, the parameter list from the args (an arena arg adds `<name>o`). */
  private part(body: string, args: Named[], output: number, constants: Record<string, number> = {}): GjPart {
    const params = args.flatMap(([n, a]) => ("arena" in a || "prev" in a ? [n, `${n}o`] : [n]));
    const fn = `function (${params.join(", ")}) {\n${body}\n}`;
    return {
      fn,
      output,
      args: args.map(([, a]) => a),
      constants,
    };
  }

  /** Statements that set `acc_<site>` to the dot product of row `row` (byte offset expression) of `w` with x[xo..]. */
  private dot(
    scheme: string,
    w: string,
    row: string,
    x: string,
    xo: string,
    n: number,
  ): { code: string; acc: string } {
    const s = schemeOf(scheme);
    if (n % s.blockSize !== 0)
      throw new Error(`rows of ${n} are not whole ${scheme} blocks of ${s.blockSize}`);
    const site = `s${this.site++}`;
    const nb = n / s.blockSize;
    // Activation i of the block: a piece's `$x[i]`, the element loop's `$j`.
    const xb = `${x}[${xo} + $blk * ${s.blockSize} + `;
    const body = s.gpujs.dot
      ? [s.gpujs.dot.replaceAll("$x[", xb)]
      : [
          `for (let $j = 0; $j < ${s.blockSize}; $j++) {`,
          `let $v = 0;`,
          s.gpujs.elem,
          `$acc += $v * ${xb}$j];`,
          `}`,
        ];
    const text = [
      `let $acc = 0;`,
      `for (let $blk = 0; $blk < ${nb}; $blk++) {`,
      `const $base = ${row} + $blk * ${s.blockBytes};`,
      s.gpujs.block ?? "",
      ...body,
      `}`,
    ].join("\n");
    return { code: specialize(text, site, w), acc: `acc_${site}` };
  }

  /** RMS-norm parts over `n` floats of arena param `at`, weight binding `g`: the factor, then the normalized x. */
  private normParts(n: number, eps: number, at: string, g: number): GjPart[] {
    const rms = this.part(
      [
        "let ss = 0;",
        "for (let i = 0; i < this.constants.n; i++) {",
        "  const t = x[xo + i];",
        "  ss += t * t;",
        "}",
        `return 1 / Math.sqrt(ss / this.constants.n + ${lit(eps)});`,
      ].join("\n"),
      [["x", { arena: at, len: n }]],
      1,
      { n },
    );
    const site = `s${this.site++}`;
    const norm = this.part(
      [
        "const i = this.thread.x;",
        specialize("@f32($gv, 4 * i);", site, "g"),
        `return x[xo + i] * r[0] * gv_${site};`,
      ].join("\n"),
      [
        ["x", { arena: at, len: n }],
        ["r", { part: 0 }],
        ["g", { bind: g }],
      ],
      n,
    );
    return [rms, norm];
  }

  embed(scheme: string, vocab: number, hidden: number): KernelUse {
    const s = schemeOf(scheme);
    return this.add(`embed_${scheme}_${vocab}x${hidden}`, () => {
      const rb = (hidden / s.blockSize) * s.blockBytes;
      const site = `s${this.site++}`;
      const body = specialize(
        [
          "const i = this.thread.x;",
          // A table split by rows: only the chunk holding the token writes it; the rest pass through.
          "if (token < r0 - 0.5) { return prev[prevo + i]; }",
          "if (token > r1 - 0.5) { return prev[prevo + i]; }",
          `const $blk = Math.floor(i / ${s.blockSize});`,
          `const $j = i - $blk * ${s.blockSize};`,
          `const $base = (token - r0) * this.constants.rowBytes + $blk * ${s.blockBytes};`,
          "let $v = 0;",
          s.gpujs.block ?? "",
          s.gpujs.elem,
          "return $v;",
        ].join("\n"),
        site,
        "w",
      );
      return {
        parts: [
          this.part(
            body,
            [
              ["w", { bind: 0 }],
              ["token", { frame: "token" }],
              ["prev", { prev: hidden }],
              ["r0", { param: "r0" }],
              ["r1", { param: "r1" }],
            ],
            hidden,
            { rowBytes: rb },
          ),
        ],
        chunked: true,
        out: { arena: "yo", len: hidden },
      };
    });
  }

  linear(o: LinearKind): KernelUse {
    const s = schemeOf(o.scheme);
    const flags = [
      o.norm !== undefined ? "n" : "",
      o.residual ? "res" : "",
      o.kv ? "kv" : "",
      o.scaled ? "acc" : "",
    ];
    const name = `linear_${o.scheme}_${o.out}x${o.in}${flags
      .filter(Boolean)
      .map((f) => `_${f}`)
      .join("")}`;
    return this.add(name, () => {
      const parts: GjPart[] = o.norm !== undefined ? this.normParts(o.in, o.norm, "xo", 1) : [];
      const kvBind = o.norm !== undefined ? 2 : 1;
      const rb = (o.in / s.blockSize) * s.blockBytes;
      const xArg: Named = parts.length ? ["x", { part: 1 }] : ["x", { arena: "xo", len: o.in }];
      const xoDecl = parts.length ? "const xo = 0;" : "";
      // A matrix split by rows runs once per chunk (params r0, r1: its rows of the output, its buffer's first
      // row being r0). Rows outside the chunk keep what the chunks before wrote: the previous output (`prev`),
      // the accumulated y of a scaled product, the KV cache's row.
      const d = this.dot(o.scheme, "w", "(o - r0) * this.constants.rowBytes", "x", "xo", o.in);
      const args: Named[] = [["w", { bind: 0 }], xArg];
      let result = d.acc;
      if (o.residual) {
        args.push(["r", { arena: "ro", len: o.out }]);
        result = `${d.acc} + r[ro + o]`;
      }
      let keep = "prev[prevo + o]";
      if (o.scaled) {
        args.push(["s", { arena: "so", len: 1 }], ["y", { arena: "yo", len: o.out }]);
        result = `y[yo + o] + s[so] * ${d.acc}`;
        keep = "y[yo + o]";
      }
      const rows: Named[] = [
        ["r0", { param: "r0" }],
        ["r1", { param: "r1" }],
      ];
      const pass = (v: string) => [
        `if (o < r0 - 0.5) { return ${v}; }`,
        `if (o > r1 - 0.5) { return ${v}; }`,
      ];
      if (o.kv) {
        // Row `pos` of the KV cache: the backend copies it in; a chunk's other columns keep the cache's.
        args.push(["kv", { bind: kvBind }], ["pos", { frame: "pos" }], ...rows);
        const body = [
          xoDecl,
          "const o = this.thread.x;",
          ...pass("kv[pos * this.constants.out + o]"),
          d.code,
          `return ${result};`,
        ].join("\n");
        parts.push(this.part(body, args, o.out, { out: o.out, rowBytes: rb }));
        return { parts, chunked: true, out: { row: kvBind } };
      }
      if (!o.scaled) args.push(["prev", { prev: o.out }]);
      args.push(...rows);
      const body = [xoDecl, "const o = this.thread.x;", ...pass(keep), d.code, `return ${result};`].join(
        "\n",
      );
      parts.push(this.part(body, args, o.out, { rowBytes: rb }));
      return { parts, chunked: true, out: { arena: "yo", len: o.out } };
    });
  }

  gateUp(o: { gate: string; up: string; out: number; in: number; norm?: number }): KernelUse {
    const name = `gate_up_${o.gate}_${o.up}_${o.out}x${o.in}${o.norm !== undefined ? "_n" : ""}`;
    return this.add(name, () => {
      const parts: GjPart[] = o.norm !== undefined ? this.normParts(o.in, o.norm, "xo", 2) : [];
      const g = schemeOf(o.gate);
      const u = schemeOf(o.up);
      // Split by rows (gate and up alike): rows outside r0..r1 keep what the chunks before wrote.
      const dg = this.dot(o.gate, "wg", "(f - r0) * this.constants.gateRow", "x", "xo", o.in);
      const du = this.dot(o.up, "wu", "(f - r0) * this.constants.upRow", "x", "xo", o.in);
      const body = [
        parts.length ? "const xo = 0;" : "",
        "const f = this.thread.x;",
        "if (f < r0 - 0.5) { return prev[prevo + f]; }",
        "if (f > r1 - 0.5) { return prev[prevo + f]; }",
        dg.code,
        du.code,
        `const gate = ${dg.acc};`,
        `return (gate / (1 + Math.exp(-gate))) * ${du.acc};`,
      ].join("\n");
      parts.push(
        this.part(
          body,
          [
            ["wg", { bind: 0 }],
            ["wu", { bind: 1 }],
            parts.length ? ["x", { part: 1 }] : ["x", { arena: "xo", len: o.in }],
            ["prev", { prev: o.out }],
            ["r0", { param: "r0" }],
            ["r1", { param: "r1" }],
          ],
          o.out,
          {
            gateRow: (o.in / g.blockSize) * g.blockBytes,
            upRow: (o.in / u.blockSize) * u.blockBytes,
          },
        ),
      );
      return { parts, chunked: true, out: { arena: "yo", len: o.out } };
    });
  }

  route(o: {
    scheme: string;
    experts: number;
    in: number;
    k: number;
    normalize: boolean;
    norm?: number;
  }): KernelUse {
    const name = `route_${o.scheme}_${o.experts}x${o.in}_top${o.k}${o.normalize ? "_norm" : ""}${o.norm !== undefined ? "_n" : ""}`;
    return this.add(
      name,
      () => {
        const s = schemeOf(o.scheme);
        const parts: GjPart[] = o.norm !== undefined ? this.normParts(o.in, o.norm, "xo", 1) : [];
        const d = this.dot(o.scheme, "w", "e * this.constants.rowBytes", "x", "xo", o.in);
        parts.push(
          this.part(
            [
              parts.length ? "const xo = 0;" : "",
              "const e = this.thread.x;",
              d.code,
              `return ${d.acc};`,
            ].join("\n"),
            [["w", { bind: 0 }], parts.length ? ["x", { part: 1 }] : ["x", { arena: "xo", len: o.in }]],
            o.experts,
            { rowBytes: (o.in / s.blockSize) * s.blockBytes },
          ),
        );
        // Softmax, then the j-th pick is the expert of rank j (ties to the lower id, as the CPU's arg-max):
        // threads 0..k−1 write the ids, k..2k−1 the weights.
        const logits = parts.length - 1;
        const body = [
          "const t = this.thread.x;",
          "let mx = p[0];",
          "for (let e1 = 1; e1 < this.constants.experts; e1++) {",
          "  if (p[e1] > mx) { mx = p[e1]; }",
          "}",
          "let sum = 0;",
          "for (let e2 = 0; e2 < this.constants.experts; e2++) {",
          "  sum += Math.exp(p[e2] - mx);",
          "}",
          "let j = t;",
          "if (t > this.constants.k - 0.5) { j = t - this.constants.k; }",
          "let pick = 0;",
          "let chosen = 0;",
          "for (let e = 0; e < this.constants.experts; e++) {",
          "  let rank = 0;",
          "  for (let f = 0; f < this.constants.experts; f++) {",
          "    if (p[f] > p[e]) { rank += 1; }",
          "    if (f < e) { if (p[f] >= p[e]) { if (p[f] <= p[e]) { rank += 1; } } }",
          "  }",
          "  if (Math.abs(rank - j) < 0.5) { pick = e; }",
          "  if (rank < this.constants.k - 0.5) { chosen += Math.exp(p[e] - mx) / sum; }",
          "}",
          "if (t < this.constants.k - 0.5) { return pick; }",
          "let wgt = Math.exp(p[pick] - mx) / sum;",
          o.normalize ? "wgt = wgt / chosen;" : "",
          "return wgt;",
        ].join("\n");
        parts.push(this.part(body, [["p", { part: logits }]], 2 * o.k, { experts: o.experts, k: o.k }));
        return { parts, out: { arena: "yo", len: 2 * o.k } };
      },
      1,
    );
  }

  attend(o: {
    heads: number;
    kvHeads: number;
    headDim: number;
    window: number;
    maxContext: number;
    scale?: number;
  }): KernelUse {
    const name = `attend_${o.heads}x${o.headDim}_kv${o.kvHeads}${o.window ? `_w${o.window}` : ""}_ctx${o.maxContext}${o.scale !== undefined ? `_s${constName(o.scale)}` : ""}`;
    return this.add(
      name,
      () => {
        const constants = {
          ctx: o.maxContext,
          hd: o.headDim,
          group: o.heads / o.kvHeads,
          kvw: o.kvHeads * o.headDim,
        };
        const first = o.window
          ? `let first = pos - ${o.window - 1};\nif (first < 0) { first = 0; }`
          : "const first = 0;";
        const scores = this.part(
          [
            "const t = this.thread.x;",
            "const h = Math.floor(t / this.constants.ctx);",
            "const p = t - h * this.constants.ctx;",
            first,
            "if (p > pos + 0.5) { return 0; }",
            "if (p < first - 0.5) { return 0; }",
            "const kvo = Math.floor(h / this.constants.group) * this.constants.hd;",
            "let s = 0;",
            "for (let d = 0; d < this.constants.hd; d++) {",
            "  s += q[qo + h * this.constants.hd + d] * k[p * this.constants.kvw + kvo + d];",
            "}",
            `return s * ${lit(o.scale ?? 1 / Math.sqrt(o.headDim))};`,
          ].join("\n"),
          [
            ["q", { arena: "qo", len: o.heads * o.headDim }],
            ["k", { bind: 0 }],
            ["pos", { frame: "pos" }],
          ],
          o.heads * o.maxContext,
          constants,
        );
        const out = this.part(
          [
            "const t = this.thread.x;",
            "const h = Math.floor(t / this.constants.hd);",
            "const d = t - h * this.constants.hd;",
            "const kvo = Math.floor(h / this.constants.group) * this.constants.hd;",
            "const so = h * this.constants.ctx;",
            first,
            "let mx = sc[so + first];",
            "for (let p1 = 0; p1 < this.constants.ctx; p1++) {",
            "  if (p1 > pos + 0.5) { break; }",
            "  if (p1 > first - 0.5) { if (sc[so + p1] > mx) { mx = sc[so + p1]; } }",
            "}",
            "let sum = 0;",
            "for (let p2 = 0; p2 < this.constants.ctx; p2++) {",
            "  if (p2 > pos + 0.5) { break; }",
            "  if (p2 > first - 0.5) { sum += Math.exp(sc[so + p2] - mx); }",
            "}",
            "let acc = 0;",
            "for (let p3 = 0; p3 < this.constants.ctx; p3++) {",
            "  if (p3 > pos + 0.5) { break; }",
            "  if (p3 > first - 0.5) { acc += (Math.exp(sc[so + p3] - mx) / sum) * v[p3 * this.constants.kvw + kvo + d]; }",
            "}",
            "return acc;",
          ].join("\n"),
          [
            ["sc", { part: 0 }],
            ["v", { bind: 1 }],
            ["pos", { frame: "pos" }],
          ],
          o.heads * o.headDim,
          constants,
        );
        return { parts: [scores, out], out: { arena: "yo", len: o.heads * o.headDim } };
      },
      1,
    );
  }

  rope(o: { width: number; headDim: number; interleaved: boolean; kv: boolean }): KernelUse {
    const name = `rope_${o.width}_d${o.headDim}_${o.interleaved ? "interleaved" : "half"}${o.kv ? "_kv" : ""}`;
    return this.add(name, () => {
      const pair = o.interleaved
        ? [
            "const jj = Math.floor(c / 2);",
            "const isb = c - 2 * jj;",
            "const a = h * this.constants.hd + 2 * jj;",
            "const b = a + 1;",
          ]
        : [
            "let jj = c;",
            "let isb = 0;",
            "if (c > this.constants.half - 0.5) { jj = c - this.constants.half; isb = 1; }",
            "const a = h * this.constants.hd + jj;",
            "const b = a + this.constants.half;",
          ];
      const rot = [
        "const h = Math.floor(i / this.constants.hd);",
        "const c = i - h * this.constants.hd;",
        ...pair,
        "const cs = tab[tabo + (pos * this.constants.half + jj) * 2];",
        "const sn = tab[tabo + (pos * this.constants.half + jj) * 2 + 1];",
      ];
      const constants = { hd: o.headDim, half: o.headDim / 2, width: o.width };
      const body = [
        "const i = this.thread.x;",
        ...rot,
        "const va = x[xo + a];",
        "const vb = x[xo + b];",
        "if (isb > 0.5) { return va * sn + vb * cs; }",
        "return va * cs - vb * sn;",
      ].join("\n");
      const args: Named[] = [
        ["x", { arena: "xo", len: o.width }],
        ["tab", { arena: "tab", len: 1 }],
        ["pos", { frame: "pos" }],
      ];
      // Into the arena at yo, or (kv) into the KV cache's row `pos`, from the linear's output in the arena.
      const out = o.kv ? { row: 0 } : { arena: "yo", len: o.width };
      return { parts: [this.part(body, args, o.width, constants)], out };
    });
  }

  rmsNorm(o: { n: number; eps: number; heads?: number }): KernelUse {
    if (o.heads) return this.headNorm(o.n, o.eps, o.heads);
    return this.add(`rms_norm_${o.n}`, () => ({
      parts: this.normParts(o.n, o.eps, "xo", 0),
      out: { arena: "yo", len: o.n },
    }));
  }

  /** A per-head RMS norm in one kernel (a kernel writes its output whole): each head's factor, then x. */
  private headNorm(n: number, eps: number, heads: number): KernelUse {
    return this.add(`rms_norm_${n}_h${heads}`, () => {
      const x: Named = ["x", { arena: "xo", len: n }];
      const rms = this.part(
        [
          "const h = this.thread.x;",
          "let ss = 0;",
          "for (let i = 0; i < this.constants.d; i++) {",
          "  const t = x[xo + h * this.constants.d + i];",
          "  ss += t * t;",
          "}",
          `return 1 / Math.sqrt(ss / this.constants.d + ${lit(eps)});`,
        ].join("\n"),
        [x],
        heads,
        { d: n / heads },
      );
      const site = `s${this.site++}`;
      const norm = this.part(
        [
          "const i = this.thread.x;",
          "const h = Math.floor(i / this.constants.d);",
          "const j = i - h * this.constants.d;",
          specialize("@f32($gv, 4 * j);", site, "g"),
          `return x[xo + i] * r[h] * gv_${site};`,
        ].join("\n"),
        [x, ["r", { part: 0 }], ["g", { bind: 0 }]],
        n,
        { d: n / heads },
      );
      return { parts: [rms, norm], out: { arena: "yo", len: n } };
    });
  }

  elementwise(op: "add" | "mul" | "silu" | "copy" | "zero" | "scale", n: number, by = 1): KernelUse {
    if (op === "scale")
      return this.add(`scale_${n}_${constName(by)}`, () => ({
        parts: [
          this.part(
            `const i = this.thread.x;\nreturn a[ao + i] * ${lit(by)};`,
            [["a", { arena: "ao", len: n }]],
            n,
          ),
        ],
        out: { arena: "yo", len: n },
      }));
    return this.add(`${op}_${n}`, () => {
      const a: Named = ["a", { arena: "ao", len: n }];
      const b: Named = ["b", { arena: "bo", len: n }];
      const [expr, args]: [string, Named[]] =
        op === "add"
          ? ["a[ao + i] + b[bo + i]", [a, b]]
          : op === "mul"
            ? ["a[ao + i] * b[bo + i]", [a, b]]
            : op === "silu"
              ? ["a[ao + i] / (1 + Math.exp(-a[ao + i]))", [a]]
              : op === "copy"
                ? ["a[ao + i]", [a]]
                : ["0", []];
      return {
        parts: [this.part(`const i = this.thread.x;\nreturn ${expr};`, args, n)],
        out: { arena: "yo", len: n },
      };
    });
  }

  bias(n: number): KernelUse {
    return this.add(`bias_${n}`, () => {
      const site = `s${this.site++}`;
      const code = [
        "const i = this.thread.x;",
        specialize("@f32($gv, 4 * i);", site, "g"),
        `return a[ao + i] + gv_${site};`,
      ].join("\n");
      const args: Named[] = [
        ["a", { arena: "ao", len: n }],
        ["g", { bind: 0 }],
      ];
      return { parts: [this.part(code, args, n)], out: { arena: "yo", len: n } };
    });
  }

  sigmoidGate(n: number, d: number, residual = false): KernelUse {
    return this.add(`sigmoid_gate_${n}x${d}${residual ? "_res" : ""}`, () => {
      const site = `s${this.site++}`;
      const gate = this.part(
        [
          "let s = 0;",
          "for (let i = 0; i < this.constants.d; i++) {",
          `  ${specialize("@f32($gv, 4 * i);", site, "g")}`,
          `  s += gv_${site} * b[bo + i];`,
          "}",
          "return 1 / (1 + Math.exp(-s));",
        ].join("\n"),
        [
          ["b", { arena: "bo", len: d }],
          ["g", { bind: 0 }],
        ],
        1,
        { d },
      );
      const out = this.part(
        `const i = this.thread.x;\nreturn ${residual ? "s[so + i] + " : ""}a[ao + i] * r[0];`,
        [
          ["a", { arena: "ao", len: n }],
          ["r", { part: 0 }],
          // The residual (the MoE's sum) at ro, read as s[so + i].
          ...(residual ? [["s", { arena: "ro", len: n }] as Named] : []),
        ],
        n,
      );
      return { parts: [gate, out], out: { arena: "yo", len: n } };
    });
  }

  softmax(n: number): KernelUse {
    return this.add(`softmax_${n}`, () => {
      const x: Named = ["x", { arena: "xo", len: n }];
      const stats = this.part(
        [
          "let mx = x[xo];",
          "for (let i1 = 1; i1 < this.constants.n; i1++) {",
          "  if (x[xo + i1] > mx) { mx = x[xo + i1]; }",
          "}",
          "if (this.thread.x < 0.5) { return mx; }",
          "let sum = 0;",
          "for (let i2 = 0; i2 < this.constants.n; i2++) {",
          "  sum += Math.exp(x[xo + i2] - mx);",
          "}",
          "return sum;",
        ].join("\n"),
        [x],
        2,
        { n },
      );
      const out = this.part(
        "const i = this.thread.x;\nreturn Math.exp(x[xo + i] - m[0]) / m[1];",
        [x, ["m", { part: 0 }]],
        n,
      );
      return { parts: [stats, out], out: { arena: "yo", len: n } };
    });
  }

  kvWrite(n: number): KernelUse {
    // The row itself: the backend copies it into the cache at the position.
    return this.add(`kv_write_${n}`, () => ({
      parts: [this.part("return x[xo + this.thread.x];", [["x", { arena: "xo", len: n }]], n)],
      out: { row: 0 },
    }));
  }
}

registerGpuKernels("gpujs", () => new GpuJsKernels());
