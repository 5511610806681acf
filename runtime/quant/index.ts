// The quantization schemes: the registry and the scheme API, with the built-ins registered.
import "./builtins.ts";

export { builtinSchemes, f16Table, registerBuiltins } from "./builtins.ts";
export { compileCpuDot, type RowDot } from "./cpu-dot.ts";
export { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from "./half.ts";
export * from "./registry.ts";
export * from "./scheme.ts";
