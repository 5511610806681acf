// What a test needs from the machine, as vitest options for `describe` and `it`: where the machine lacks it
// the test is skipped, and its meta says why and how to get it, which test/summary-reporter.ts prints in one
// line at the end of the run. A WebGPU adapter is asked for once per run (test/global-setup.ts);
// MOEC_REQUIRE_GPU=1 (set by .ci/run) makes the GPU tests run without one, so that they fail.
//
//   describe("webgpu backend", needsWebGpu(), () => { … });
//   it("…", { ...needsWebGpu(), timeout: 60_000 }, async () => { … });
//   describe(`gpujs ${mode}`, needsWebGpu(mode === "webgpu"), () => { … });
import "../runtime/relaxed-simd.ts";
import { inject, type TestOptions } from "vitest";
import { WasmKernels } from "../compiler/codegen/wasm.ts";

declare module "vitest" {
  interface TaskMeta {
    /** What the machine lacks for this test, and how to get it (a phrase after "N skipped "). */
    missing?: string;
    /** The test runs (and fails) without it all the same: MOEC_REQUIRE_GPU=1. */
    required?: boolean;
  }
}

/** Options that skip a test or suite where `have` is false, saying why: `without` is a phrase such as
 * "without X (how to get X)". `required`: run it all the same (so it fails). */
export function skipUnless(have: boolean, without: string, required = false): TestOptions {
  if (have) return {};
  return { skip: !required, meta: { missing: without, ...(required ? { required } : {}) } };
}

const webgpu = inject("webgpu");
if (webgpu === undefined) {
  throw new Error("no WebGPU probe: vitest.config.ts must list test/global-setup.ts in globalSetup");
}

/** MOEC_REQUIRE_GPU=1: a missing adapter is a failure, not a skip. */
export const gpuRequired = process.env.MOEC_REQUIRE_GPU === "1";

const WITHOUT_ADAPTER =
  "without a WebGPU adapter (" +
  ("missing" in webgpu ? webgpu.missing : "") +
  "; on Debian 12, Mesa 25's lavapipe is one, a software Vulkan device: mesa-vulkan-drivers and libvulkan1 " +
  "from bookworm-backports, which `bash .ci/run` installs as root; MOEC_REQUIRE_GPU=1 fails instead of skipping)";

/** A test or suite that needs a WebGPU adapter: the webgpu backend, or the gpujs backend in gpu.js's webgpu
 * mode (both through dawn.node). `when` false: this case does not (a webasm case beside a webgpu one). */
export function needsWebGpu(when = true): TestOptions {
  return when ? skipUnless("adapter" in webgpu, WITHOUT_ADAPTER, gpuRequired) : {};
}

/** Whether this engine validates relaxed-SIMD WebAssembly (Node 22+, or Node 20 with the flag that
 * runtime/relaxed-simd.ts sets): the kernels' relaxed build. */
export const relaxedSimd = (() => {
  const k = new WasmKernels();
  k.matvec("q8_0", 32);
  return WebAssembly.validate(k.binary(true));
})();

/** A test of the relaxed-SIMD kernel build. */
export function needsRelaxedSimd(): TestOptions {
  return skipUnless(
    relaxedSimd,
    `without relaxed SIMD (Node ${process.versions.node}'s V8 does not enable it; Node 22+ does, and the plain-SIMD twins ran)`,
  );
}
