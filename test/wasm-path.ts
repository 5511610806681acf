// Run by runtime/wasm-kernels.test.ts in a child process, under a V8 flag that turns relaxed SIMD on
// or off: which build the runtime chose, and the generated model's worst error against the reference.
import { compileAndLoad, relativeError } from "./harness.ts";

const [spec = "specs/tiny-mixtral.moe", scheme = "f32"] = process.argv.slice(2);
const { generated, reference, compiled } = await compileAndLoad(spec, scheme, 13);
let worst = 0;
for (let pos = 0; pos < 6; pos++) {
  const token = (pos * 29 + 3) % compiled.manifest.vocab;
  worst = Math.max(worst, relativeError(generated.step(token, pos), reference.step(token, pos)));
}
console.log(JSON.stringify({ relaxed: generated.rt.relaxedSimd, worst }));
