// Which of a compiled model's two WebAssembly builds runs here: the relaxed-SIMD one (fused
// multiply-adds) when this engine validates it (Node 22+, or Node 20 with
// --experimental-wasm-relaxed-simd, which relaxed-simd.ts sets), else the plain-SIMD one. Decided once, at
// load time.
import "./relaxed-simd.ts";

export interface WasmBuilds {
  /** Base64 of the plain-SIMD module; empty when the model has no WebAssembly kernels. */
  wasm: string;
  /** Base64 of the relaxed-SIMD twin; may be absent (older compiles) or empty. */
  wasmRelaxed?: string;
}

export function chooseKernels(m: WasmBuilds): { module: WebAssembly.Module; relaxed: boolean } | undefined {
  if (!m.wasm) return undefined;
  if (m.wasmRelaxed) {
    const bytes = Buffer.from(m.wasmRelaxed, "base64");
    if (WebAssembly.validate(bytes)) return { module: new WebAssembly.Module(bytes), relaxed: true };
  }
  return { module: new WebAssembly.Module(Buffer.from(m.wasm, "base64")), relaxed: false };
}
