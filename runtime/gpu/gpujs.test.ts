// The gpujs backend on a real WebGPU device (Mesa's lavapipe in CI) and in gpu.js's webasm mode: each
// scheme's in-kernel decode against its reference decode, then whole models against the CPU backend
// (the same greedy tokens, logits within 1e-4 of the largest), with a VRAM budget that forces expert
// offload, and the bytes uploaded per decoded token.
import { afterAll, describe, expect, it } from "vitest";
import { GpuJsKernels } from "../../compiler/codegen/gpujs/kernels.ts";
import { compileGpuAndCpu, type GpuPair, greedyBoth, logitTolerance } from "../../test/gpu-harness.ts";
import { needsWebGpu } from "../../test/machine.ts";
import { windowSpec } from "../../test/window-spec.ts";
import { chooseResidency, measureDevice, minimumSlots } from "../memory/device-plan.ts";
import type { MemoryOptions } from "../memory/place.ts";
import { builtinSchemes } from "../quant/builtins.ts";
import { getScheme } from "../quant/registry.ts";
import { GpuError } from "./backend.ts";
import { GpuJsBackend, setGpuJsMode } from "./gpujs.ts";
import { packBytes, unpackBytes } from "./gpujs-pack.ts";
import type { GjKernelSpec } from "./gpujs-spec.ts";
import type { ExpertBuffers } from "./place.ts";

// Logits against the CPU's: within logitTolerance (test/gpu-harness.ts), which says why.

function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

describe("gpujs packing", () => {
  it("carries three bytes per f32, exactly", () => {
    const r = rng(1);
    for (const n of [1, 2, 3, 34, 100]) {
      const bytes = Uint8Array.from({ length: n }, () => Math.floor(r() * 256));
      const words = packBytes(bytes);
      expect(words.length).toBe(Math.ceil(n / 3));
      for (const w of words) expect(w).toBeLessThan(2 ** 24);
      expect(unpackBytes(words, n)).toEqual(bytes);
    }
  });
});

const modes = ["webasm", "webgpu"] as const;

for (const mode of modes) {
  describe(`gpujs ${mode}`, needsWebGpu(mode === "webgpu"), () => {
    const opened: GpuPair[] = [];
    afterAll(() => {
      for (const p of opened) p.gpu.close();
    });

    it("decodes every built-in scheme in the kernel as its reference decode does", async () => {
      const backend = await GpuJsBackend.create(mode);
      try {
        const ks = new GpuJsKernels();
        const rows = 3;
        const n = 256;
        const r = rng(5);
        for (const s of builtinSchemes) {
          const src = Float32Array.from({ length: rows * n }, () => (r() - 0.5) * 4);
          const bytes = new Uint8Array((rows * n * s.blockBytes) / s.blockSize);
          s.encode(src, bytes);
          const want = new Float32Array(rows * n);
          s.decode(bytes, want);
          const spec = JSON.parse(ks.sources.get(ks.embed(s.name, rows, n).name)!) as GjKernelSpec;
          const w = backend.createBuffer(bytes.length, `table ${s.name}`, "storage");
          backend.write(w, 0, bytes);
          const arena = backend.createBuffer(n * 4, "arena", "storage");
          const frame = backend.createBuffer(16, "frame", "uniform");
          const p = await backend.pipeline(
            `embed_${s.name}`,
            JSON.stringify(spec),
            { yo: 0, r0: 0, r1: rows },
            [],
          );
          const got = new Float32Array(n);
          for (let t = 0; t < rows; t++) {
            backend.write(frame, 0, new Uint32Array([t, 0]));
            backend.dispatch(p, [arena, frame, w], [1, 1, 1]);
            await backend.read(arena, 0, n * 4, arena, new Uint8Array(got.buffer));
            let worst = 0;
            for (let i = 0; i < n; i++) worst = Math.max(worst, Math.abs(got[i]! - want[t * n + i]!));
            expect(worst, `${s.name} row ${t}`).toBeLessThanOrEqual(
              1e-6 * Math.max(1, Math.abs(want[t * n]!)),
            );
          }
          backend.free(w);
        }
      } finally {
        backend.destroy();
      }
    }, 120_000);

    const open = async (spec: string, quant: string, memory?: MemoryOptions) => {
      setGpuJsMode(mode);
      const p = await compileGpuAndCpu(spec, quant, "gpujs", { maxContext: 32, memory });
      opened.push(p);
      return p;
    };

    // Every tiny model in specs/ on the device; webasm (the same kernel text, on the CPU) on two of them.
    const cases: [string, string][] =
      mode === "webgpu"
        ? [
            ["specs/tiny-mixtral.moe", "q8_0"],
            ["specs/tiny-mixtral.moe", "q4_0"],
            ["specs/tiny-mixtral.moe", "f32"],
            ["specs/tiny-top1.moe", "q8_0"],
            ["specs/tiny-shared-expert.moe", "q4_0"],
          ]
        : [
            ["specs/tiny-mixtral.moe", "q4_0"],
            ["specs/tiny-shared-expert.moe", "q8_0"],
          ];
    it.each(cases)(
      "%s at %s: the CPU backend's greedy tokens",
      async (spec, quant) => {
        const p = await open(spec, quant);
        const r = await greedyBoth(p, [1, 7, 42], 5);
        expect(r.gpuTokens).toEqual(r.cpuTokens);
        expect(r.worst).toBeLessThan(logitTolerance(quant));
      },
      120_000,
    );

    it("a sliding window (its f32 KV cache, all gpujs holds): the CPU backend's greedy tokens", async () => {
      setGpuJsMode(mode);
      const p = await compileGpuAndCpu(windowSpec(12, 64), "f32", "gpujs", { maxContext: 64 });
      opened.push(p);
      expect(p.gpu.manifest.kvType).toBe("f32");
      // Past the window: the last 12 positions only, on both.
      const r = await greedyBoth(p, [1, 5, 9, 13, 17, 21, 25, 29, 33, 37, 41, 45, 49, 53, 57], 8);
      expect(r.gpuTokens).toEqual(r.cpuTokens);
      expect(r.worst).toBeLessThan(logitTolerance("f32"));
    }, 120_000);

    if (mode === "webgpu") {
      // Every scheme once, on rows of 256 so the k-quants apply (webasm runs the same kernel text).
      it.each(builtinSchemes.map((s) => s.name))(
        "every scheme end to end: %s",
        async (scheme) => {
          const p = await open("test/fixtures/tiny-256.moe", scheme);
          const r = await greedyBoth(p, [3, 9], 3);
          expect(r.gpuTokens).toEqual(r.cpuTokens);
          expect(r.worst).toBeLessThan(logitTolerance(scheme));
        },
        120_000,
      );
    }

    it("weights split by rows under a lowered binding limit: the same tokens", async () => {
      // 8 KiB per buffer: the embedding table and the head (256 rows of 68 bytes) in several chunks each.
      process.env.MOEC_GPUJS_MAX_BINDING = "8192";
      try {
        const p = await open("specs/tiny-mixtral.moe", "q8_0");
        const chunks = p.gpu.placed.weights.get("lm_head")![0]!.buffers.length;
        expect(chunks).toBeGreaterThan(1);
        const r = await greedyBoth(p, [1, 7], 3);
        expect(r.gpuTokens).toEqual(r.cpuTokens);
        expect(r.worst).toBeLessThan(logitTolerance("q8_0"));
      } finally {
        delete process.env.MOEC_GPUJS_MAX_BINDING;
      }
    }, 120_000);

    it.each([
      ["f32", 15, 6, 6, 2],
      ["q8_0", 4, 2, 2, 1],
    ] as const)(
      "every matrix split by rows at 4608 bytes per buffer (%s): experts, KV, scaled and gate_up kernels per chunk, the CPU's tokens, resident and offloaded",
      async (quant, headChunks, gateChunks, downChunks, kChunks) => {
        // f32: the head in 15 buffers, an expert's gate/up (96 rows of 256 bytes) in 6, its down (64 rows of
        // 384 bytes) in 6, wk (32 rows of 256 bytes: a KV linear) in 2; q8_0: 4, 2, 2, wk whole. The arena
        // (4224 bytes) and a KV cache (4096) fit in one.
        process.env.MOEC_GPUJS_MAX_BINDING = "4608";
        try {
          const p = await open("specs/tiny-mixtral.moe", quant);
          const w = p.gpu.placed.weights;
          expect(w.get("lm_head")![0]!.buffers.length).toBe(headChunks);
          expect(w.get("layer.wk")![1]!.buffers.length).toBe(kChunks);
          for (const e of w.get("layer.w_gate")![1]!.experts!) expect(e.buffers.length).toBe(gateChunks);
          for (const e of w.get("layer.w_down")![0]!.experts!) expect(e.buffers.length).toBe(downChunks);
          const r = await greedyBoth(p, [1, 7, 42], 4);
          expect(r.gpuTokens).toEqual(r.cpuTokens);
          expect(r.worst).toBeLessThan(logitTolerance(quant));

          const m = p.gpu.manifest;
          const budget = measureDevice(m, minimumSlots(m)).used;
          const q = await open("specs/tiny-mixtral.moe", quant, { deviceBudget: budget });
          expect(q.gpu.placed.caches.length).toBeGreaterThan(0);
          const slot: ExpertBuffers[] = [];
          q.gpu.placed.experts(0, 0, [0, 1], slot);
          expect(slot[1]!.up.buffers.length).toBe(gateChunks);
          expect(slot[1]!.down.buffers.length).toBe(downChunks);
          const before = q.gpu.memory().bytes_loaded!;
          const uploaded = q.gpu.placed.memory.uploadedBy.experts ?? 0;
          const r2 = await greedyBoth(q, [1, 7, 42], 4);
          expect(r2.gpuTokens).toEqual(r2.cpuTokens);
          expect(r2.worst).toBeLessThan(logitTolerance(quant));
          const stats = q.gpu.memory();
          expect(stats.expert_misses).toBeGreaterThan(0);
          expect(stats.peak_device_bytes).toBeLessThanOrEqual(budget);
          // Each missed expert's chunks uploaded once: no more, no less than the cache loaded.
          expect(q.gpu.placed.memory.uploadedBy.experts! - uploaded).toBe(stats.bytes_loaded! - before);
        } finally {
          delete process.env.MOEC_GPUJS_MAX_BINDING;
        }
      },
      120_000,
    );

    it("a token's KV writes copy a row each, not the cache: the same floats per token at a context of 32 and 256", async () => {
      setGpuJsMode(mode);
      const per: number[] = [];
      for (const maxContext of [32, 256]) {
        const p = await compileGpuAndCpu("specs/tiny-mixtral.moe", "q8_0", "gpujs", { maxContext });
        opened.push(p);
        const r = await greedyBoth(p, [1, 7, 42], 3);
        expect(r.gpuTokens).toEqual(r.cpuTokens);
        expect(r.worst).toBeLessThan(logitTolerance("q8_0"));
        const backend = p.gpu.backend as GpuJsBackend;
        const before = backend.kvFloats;
        await p.gpu.step(5, 5);
        per.push(backend.kvFloats - before);
      }
      // tiny-mixtral: 2 layers, K and V rows of 32 floats (K rotated by RoPE on its way in from the arena, V
      // written by its linear): one row each per layer, whatever the context.
      expect(per[0]).toBe(2 * 2 * 32);
      expect(per[1]).toBe(per[0]);
    }, 120_000);

    it("under a VRAM budget that forces expert offload: the same tokens, and uploads only the frame and missed experts", async () => {
      // The least that runs: top-k expert slots per layer.
      const probe = await open("specs/tiny-mixtral.moe", "q8_0");
      const budget = chooseResidency(probe.gpu.manifest, 0).minimum.used;
      const p = await open("specs/tiny-mixtral.moe", "q8_0", { deviceBudget: budget });
      expect(p.gpu.placed.origin).toBe("host");
      const before = p.gpu.uploadedBytes;
      const backend = p.gpu.backend as GpuJsBackend;
      const paramsBefore = backend.paramBytes;
      const r = await greedyBoth(p, [1, 7, 42], 8);
      expect(r.gpuTokens).toEqual(r.cpuTokens);
      expect(r.worst).toBeLessThan(logitTolerance("q8_0"));
      const steps = 3 + 8 - 1;
      const stats = p.gpu.memory();
      const m = p.gpu.placed.memory;
      expect(stats.expert_misses).toBeGreaterThan(0);
      expect(stats.peak_device_bytes).toBeLessThanOrEqual(budget);
      // Per token: the frame (token and position, 8 bytes) as activations, plus each missed expert's bytes.
      expect(m.uploaded - before).toBeLessThanOrEqual(steps * 8 + stats.bytes_loaded!);
      expect(m.uploadedBy.activations).toBe(steps * 8);
      expect(m.uploadedBy.experts).toBe(stats.bytes_loaded);
      // Counting gpu.js's own parameter block per dispatch too, a token moves less than its activations
      // (the whole arena) plus the missed experts.
      const all = m.uploaded - before + backend.paramBytes - paramsBefore;
      expect(all).toBeLessThanOrEqual(steps * p.gpu.manifest.arenaBytes + stats.bytes_loaded!);
    }, 120_000);
  });
}

describe("gpujs errors", () => {
  it("a buffer over the limit names the backend, the buffer and the limit", async () => {
    const backend = await GpuJsBackend.create("webasm");
    try {
      expect(() => backend.createBuffer(32 << 20, "w_big", "storage")).toThrow(
        /gpujs backend: w_big needs 33554432 bytes.*16777216/,
      );
    } finally {
      backend.destroy();
    }
  });

  // webgpu mode builds a call site's kernels when it is made (at load); webasm mode on first use.
  for (const mode of modes) {
    it(`a kernel that does not compile is named (${mode})`, needsWebGpu(mode === "webgpu"), async () => {
      const backend = await GpuJsBackend.create(mode);
      try {
        const arena = backend.createBuffer(64, "arena", "storage");
        const frame = backend.createBuffer(16, "frame", "uniform");
        backend.write(arena, 0, new Float32Array(16));
        const bad: GjKernelSpec = {
          parts: [
            {
              fn: "function (x, xo) {\nreturn x[xo + this.thread.x] +;\n}",
              output: 4,
              args: [{ arena: "xo", len: 4 }],
              constants: {},
            },
          ],
          out: { arena: "yo", len: 4 },
        };
        const err = await (async () => {
          const p = await backend.pipeline("broken_kernel", JSON.stringify(bad), { xo: 0, yo: 4 }, []);
          backend.dispatch(p, [arena, frame], [1, 1, 1]);
          await backend.read(arena, 16, 16, arena, new Uint8Array(16));
        })().catch((e) => e);
        expect(err).toBeInstanceOf(GpuError);
        expect(err.message).toMatch(
          /^gpujs backend: kernel broken_kernel \(part 0\) (does not compile|failed)/,
        );
        expect(err.message).toMatch(/--backend cpu/);
      } finally {
        backend.destroy();
      }
    });
  }

  it("a scheme without a gpujs piece is named with the backend", async () => {
    const { registerScheme } = await import("../quant/registry.ts");
    const q8 = getScheme("q8_0");
    registerScheme({ ...q8, name: "q8_nogpujs", ggmlType: undefined, gpujs: undefined });
    expect(() => new GpuJsKernels().embed("q8_nogpujs", 4, 64)).toThrow(
      /scheme `q8_nogpujs` has no gpujs piece, so the gpujs backend cannot run it/,
    );
  });
});
