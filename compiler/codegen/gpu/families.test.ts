// The MoE families after Mixtral (test/families.ts: the specs shrunk, their forward code as written) on the
// GPU backends against the CPU on the same random weights: per-head and full-width q/k norms, biases, the
// sigmoid-gated shared expert, the multipliers and the attention scale, each a kernel of the shared GPU
// program (steps.ts). webgpu needs an adapter; gpujs runs in its webasm mode (the same kernel text on
// the CPU) everywhere. The webgpu batched prefill must give stepping's last logits.
import { afterAll, describe, expect, it } from "vitest";
import { setGpuJsMode } from "../../../runtime/gpu/gpujs.ts";
import { GpuModel, type GpuModule } from "../../../runtime/gpu/model.ts";
import { importModuleSource, ModelInstance } from "../../../runtime/model.ts";
import { randomWeights } from "../../../runtime/weights.ts";
import { FAMILY_SPECS, tinySpec } from "../../../test/families.ts";
import { relativeDiff } from "../../../test/gpu-harness.ts";
import { needsWebGpu } from "../../../test/machine.ts";
import { compileModel } from "../../compile.ts";
import { compileSource } from "../../lang/frontend.ts";

const TOKENS = [5, 77, 140, 3];
const open: GpuModel[] = [];
afterAll(() => {
  for (const g of open) g.close();
});

async function pair(file: string, backend: string) {
  const spec = compileSource(tinySpec(file), file);
  const model = spec.models[0]!;
  const gpuCompiled = compileModel(spec, model, { quant: "f32", maxContext: 32, backend, kvType: "f32" });
  const cpuCompiled = compileModel(spec, model, { quant: "f32", maxContext: 32, kvType: "f32" });
  const weights = randomWeights(cpuCompiled.manifest, { seed: 3 });
  const gpu = await GpuModel.load(
    (await importModuleSource(gpuCompiled.files["model.js"]!)) as unknown as GpuModule,
    weights,
  );
  open.push(gpu);
  const cpu = new ModelInstance(await importModuleSource(cpuCompiled.files["model.js"]!), weights);
  return { gpu, cpu };
}

for (const [backend, options] of [
  ["webgpu", needsWebGpu()],
  ["gpujs", {}],
] as const) {
  describe(`${backend}${backend === "gpujs" ? " (webasm)" : ""}`, options, () => {
    for (const file of FAMILY_SPECS) {
      it(`${file}, tiny: the CPU's logits within 1e-4`, { timeout: 120_000 }, async () => {
        if (backend === "gpujs") setGpuJsMode("webasm");
        const { gpu, cpu } = await pair(file, backend);
        let last = new Float32Array(0);
        for (const [pos, t] of TOKENS.entries()) {
          last = Float32Array.from(await gpu.step(t, pos));
          expect(relativeDiff(last, cpu.step(t, pos)), `position ${pos}`).toBeLessThan(1e-4);
        }
        cpu.close();
        if (backend === "webgpu") {
          const pre = Float32Array.from(await gpu.prefill(TOKENS, 0));
          expect(relativeDiff(pre, last)).toBeLessThan(1e-4);
        }
      });
    }
  });
}
