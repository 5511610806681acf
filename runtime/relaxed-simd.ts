// Relaxed SIMD gives the kernels their faster build (fused multiply-adds, 8-bit integer dot products).
// V8 ships it from Node 22; Node 20's V8 has it behind a flag, which must be set before the first module
// that uses it compiles. Importing this file sets it, and every place that compiles kernels imports it.
import v8 from "node:v8";

// `node --no-experimental-wasm-relaxed-simd` (the plain build, by choice) is left as asked.
const major = Number(process.versions.node.split(".")[0]);
const refused = process.execArgv.includes("--no-experimental-wasm-relaxed-simd");
if (major < 22 && !refused) v8.setFlagsFromString("--experimental-wasm-relaxed-simd");
