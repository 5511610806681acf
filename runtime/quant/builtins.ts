// Registers the built-in schemes: GGUF's own types with their exact block layouts. Importing this module
// more than once (or after a scheme of the same name was registered) is harmless.
import { gpujsPieces } from "./gpujs-pieces.ts";
import { f16Table } from "./half.ts";
import { findScheme, registerScheme } from "./registry.ts";
import type { QuantScheme } from "./scheme.ts";
import { bf16 } from "./schemes/bf16.ts";
import { f16 } from "./schemes/f16.ts";
import { f32 } from "./schemes/f32.ts";
import { q2_k } from "./schemes/q2_k.ts";
import { q3_k } from "./schemes/q3_k.ts";
import { q4_0 } from "./schemes/q4_0.ts";
import { q4_1 } from "./schemes/q4_1.ts";
import { q4_k } from "./schemes/q4_k.ts";
import { q5_0 } from "./schemes/q5_0.ts";
import { q5_1 } from "./schemes/q5_1.ts";
import { q5_k } from "./schemes/q5_k.ts";
import { q6_k } from "./schemes/q6_k.ts";
import { q8_0 } from "./schemes/q8_0.ts";

/** f16 bits → f32 value: the `f16` table every generated CPU kernel receives. */
export { f16Table };

export const builtinSchemes: readonly QuantScheme[] = [
  f32,
  f16,
  bf16,
  q8_0,
  q4_0,
  q4_1,
  q5_0,
  q5_1,
  q2_k,
  q3_k,
  q4_k,
  q5_k,
  q6_k,
];

// The gpujs backend's pieces live in one file (gpujs-pieces.ts) beside the schemes they belong to.
for (const s of builtinSchemes) if (!s.gpujs) Object.assign(s, { gpujs: gpujsPieces[s.name] });

export function registerBuiltins(): void {
  for (const s of builtinSchemes) {
    if (!findScheme(s.name)) registerScheme(s);
  }
}

registerBuiltins();
