// The webgpu backend's shared pieces on lavapipe: the quantize kernel against the reference quantizer
// (exactly, ties included), and the subgroup prelude against the plain one (the same tokens as the CPU).
import { afterAll, describe, expect, it } from "vitest";
import { WgslKernels } from "../../compiler/codegen/wgsl/kernels.ts";
import { compileModel } from "../../compiler/compile.ts";
import { loadSpec } from "../../compiler/lang/frontend.ts";
import {
  argmax,
  compileGpuAndCpu,
  greedyBoth,
  logitTolerance,
  logitToleranceF16,
  relativeDiff,
} from "../../test/gpu-harness.ts";
import { needsWebGpu } from "../../test/machine.ts";
import { windowSpec } from "../../test/window-spec.ts";
import { importModuleSource } from "../model.ts";
import { quantizeBlocks } from "../quant/q8-activations.ts";
import type { Backend } from "./backend.ts";
import { bindingAccess } from "./forward.ts";
import { createBackend, type GpuModule } from "./model.ts";
import { kernelSteps, withPrelude } from "./program.ts";

const open: { close(): void }[] = [];
afterAll(() => {
  for (const o of open) o.close();
});

/** Runs the quantize kernel over x on a fresh backend; the q8 buffer's words back. */
async function quantizeOnDevice(x: Float32Array): Promise<Uint32Array> {
  const be: Backend = await createBackend("webgpu");
  open.push({ close: () => be.destroy() });
  const ks = new WgslKernels();
  const use = ks.quantize({ in: x.length });
  const source = `${ks.preludes[""]}\n${ks.sources.get(use.name)!}`;
  const arena = be.createBuffer(x.byteLength, "arena", "storage");
  const frame = be.createBuffer(16, "frame", "uniform");
  const words = (x.length / 32) * 10;
  const q8 = be.createBuffer(words * 4, "q8", "storage");
  const staging = be.createBuffer(words * 4, "readback", "readback");
  be.write(arena, 0, x);
  const p = await be.pipeline(use.name, source, { xo: 0, qo: 0 }, ["write", "uniform", "write"]);
  be.dispatch(p, [arena, frame, q8], [Math.ceil(x.length / 32 / use.perGroup), 1, 1]);
  const out = new Uint8Array(words * 4);
  await be.read(q8, 0, words * 4, staging, out);
  return new Uint32Array(out.buffer);
}

describe("webgpu kernels", needsWebGpu(), () => {
  it("the quantize kernel gives the reference's integers, d and sums exactly, ties to even", async () => {
    let seed = 12345;
    const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32) * 2 - 1;
    const x = new Float32Array(32 * 64);
    for (let i = 0; i < x.length; i++) x[i] = rand() * 3;
    // Blocks whose amax is 127 (so 127 / amax = 1) holding exact halves: each must round to even.
    for (let b = 0; b < 4; b++) {
      x[b * 32] = 127;
      for (let j = 1; j < 32; j++) x[b * 32 + j] = j - 16 + 0.5 * (b % 2 ? 1 : -1);
    }
    x.fill(0, 32 * 10, 32 * 11); // an all-zero block: d = 0, q = 0
    const want = quantizeBlocks(x);
    const got = await quantizeOnDevice(x);
    const q = new Int8Array(got.buffer);
    const d = new Float32Array(got.buffer);
    const sums = new Int32Array(got.buffer);
    let wrong = 0;
    for (let b = 0; b < x.length / 32; b++) {
      let sum = 0;
      for (let j = 0; j < 32; j++) {
        if (q[b * 40 + j] !== want.q[b * 32 + j]) wrong++;
        sum += want.q[b * 32 + j]!;
      }
      expect(d[b * 10 + 8], `block ${b} d`).toBe(want.d[b]);
      expect(sums[b * 10 + 9], `block ${b} sum`).toBe(sum);
    }
    expect(wrong).toBe(0);
    expect([...want.q.subarray(1, 4)]).toEqual([-16, -14, -14]); // the ties above, to even
  }, 60_000);

  it("the subgroup prelude where the adapter offers subgroups, the plain one where not: the CPU's tokens", async () => {
    const run = async (features: string, quant: string) => {
      const p = await compileGpuAndCpu("specs/tiny-mixtral.moe", quant, "webgpu", {
        maxContext: 32,
        features,
      });
      open.push(p.gpu);
      const r = await greedyBoth(p, [1, 5, 9], 6);
      expect(r.gpuTokens, `${features} ${quant}`).toEqual(r.cpuTokens);
      expect(r.worst, `${features} ${quant}`).toBeLessThan(logitTolerance(quant));
      return p.gpu.backend.features ?? new Set<string>();
    };
    for (const quant of ["f32", "q4_0"]) {
      // lavapipe (Mesa 25, as .ci/run installs it) offers subgroups in runs of 8.
      expect(await run("subgroups", quant)).toContain("subgroups");
      expect(await run("none", quant)).not.toContain("subgroups");
    }
  }, 300_000);

  it("KV caches in f16 where asked and offered: half the bytes, accounted, logits within the f16 bound", async () => {
    for (const spec of ["specs/tiny-mixtral.moe", "specs/tiny-top1.moe"]) {
      for (const quant of ["f32", "q8_0", "q4_0", "q4_k"]) {
        const p = await compileGpuAndCpu(spec, quant, "webgpu", {
          maxContext: 32,
          features: "subgroups,f16",
        });
        open.push(p.gpu);
        expect(p.gpu.backend.features).toContain("f16"); // lavapipe offers shader-f16
        const m = p.gpu.manifest;
        expect(m.kvType).toBe("f16");
        const kv = m.kv.reduce((n, c) => n + 2 * c.layers * m.maxContext * c.kvHeads * c.headDim * 2, 0);
        expect(p.gpu.placed.memory.acct.byLabel().kv).toBe(kv);
        // Both stepped through the CPU's greedy tokens: the logits within the f16 bound everywhere, and the
        // greedy pick the same unless the CPU's two best are a near tie within that bound.
        const tol = logitToleranceF16(quant);
        let token = 1;
        let ties = 0;
        for (let pos = 0; pos < 10; pos++) {
          const cpu = Float32Array.from(p.cpu.step(token, pos));
          const gpu = await p.gpu.step(token, pos);
          const scale = Math.max(1, ...cpu.map(Math.abs));
          expect(relativeDiff(gpu, cpu), `${spec} ${quant} @${pos}`).toBeLessThan(tol);
          const [c, g] = [argmax(cpu), argmax(gpu)];
          if (c !== g) {
            ties++;
            expect(cpu[c]! - cpu[g]!, `${spec} ${quant} @${pos}: a token apart where no tie`).toBeLessThan(
              2 * tol * scale,
            );
          }
          token = c;
        }
        expect(ties, `${spec} ${quant}`).toBeLessThanOrEqual(2);
      }
    }
  }, 600_000);

  it("a sliding window with each KV type webgpu holds (f32, f16): the CPU's greedy tokens, logits within the bound", async () => {
    for (const kvType of ["f32", "f16"] as const) {
      const p = await compileGpuAndCpu(windowSpec(12, 64), "f32", "webgpu", {
        maxContext: 64,
        features: "subgroups,f16",
        kvType,
      });
      open.push(p.gpu);
      expect(p.gpu.manifest.kvType).toBe(kvType);
      // Past the window: the last 12 positions only, on both.
      const r = await greedyBoth(p, [1, 5, 9, 13, 17, 21, 25, 29, 33, 37, 41, 45, 49, 53, 57], 24);
      expect(r.gpuTokens, kvType).toEqual(r.cpuTokens);
      expect(r.worst, kvType).toBeLessThan(
        kvType === "f16" ? logitToleranceF16("f32") : logitTolerance("f32"),
      );
    }
  }, 300_000);

  it("every kernel of Mixtral 8x7B's and 8x22B's programs compiles into a pipeline, with each prelude", async () => {
    // A device with every feature the preludes may need (lavapipe offers both).
    const was = process.env.MOEC_WEBGPU_FEATURES;
    process.env.MOEC_WEBGPU_FEATURES = "subgroups,f16";
    const be = await createBackend("webgpu").finally(() => {
      if (was === undefined) delete process.env.MOEC_WEBGPU_FEATURES;
      else process.env.MOEC_WEBGPU_FEATURES = was;
    });
    open.push({ close: () => be.destroy() });
    let made = 0;
    for (const path of ["specs/mixtral-8x7b.moe", "specs/mixtral-8x22b.moe"]) {
      const spec = loadSpec(path);
      const c = compileModel(spec, spec.models[0]!, { quant: "q4_0", backend: "webgpu", maxContext: 4096 });
      const mod = (await importModuleSource(c.files["model.js"]!)) as unknown as GpuModule;
      for (const features of [[], ["subgroups"], ["subgroups", "f16"]]) {
        const { program, variant } = withPrelude(mod.program, new Set(features));
        expect(variant).toBe(features.join(","));
        const seen = new Set<string>();
        for (const s of kernelSteps(program.steps)) {
          if (seen.has(s.kernel)) continue;
          seen.add(s.kernel);
          const access = bindingAccess(s.bind);
          const params = { ...s.params, ...(s.rows ? { r0: 0, r1: s.rows.count } : {}) };
          await be.pipeline(`${variant} ${s.kernel}`, program.kernels[s.kernel]!, params, access);
          made++;
        }
      }
    }
    expect(made).toBeGreaterThan(20);
  }, 300_000);
});
