// Relaxed SIMD gives the kernels their faster build (fused multiply-adds, 8-bit integer dot products).
// V8 ships it from Node 22; Node 20's V8 has it behind a flag, which must be set before the first module
// that uses it compiles. Importing this file sets it, and every place that compiles kernels imports it.
import v8 from "node:v8";

const major = Number(process.versions.node.split(".")[0]);
if (major < 22) v8.setFlagsFromString("--experimental-wasm-relaxed-simd");
