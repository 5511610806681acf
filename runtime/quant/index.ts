// TEMPORARY placeholder by the lead so the front end can run; the quant helper replaces this file.
import { registerScheme, findScheme } from "./registry.ts";
const d = (name: string, ggmlType: number, blockSize: number, blockBytes: number) => {
  if (!findScheme(name)) registerScheme({ name, ggmlType, blockSize, blockBytes, description: "", encode() { throw new Error("x"); }, decode() { throw new Error("x"); }, cpu: { dot: "" } });
};
d("f32", 0, 1, 4); d("f16", 1, 1, 2); d("bf16", 30, 1, 2); d("q8_0", 8, 32, 34); d("q4_0", 2, 32, 18); d("q4_1", 3, 32, 20); d("q5_0", 6, 32, 22); d("q5_1", 7, 32, 24); d("q2_k", 10, 256, 84); d("q3_k", 11, 256, 110); d("q4_k", 12, 256, 144); d("q5_k", 13, 256, 176); d("q6_k", 14, 256, 210);
export * from "./registry.ts";
