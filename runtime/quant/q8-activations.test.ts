// The gpujs text of the activation quantizer (Q8X_GPUJS, Q8X_GPUJS_AT) rounds as the reference does,
// ties to even included: run here as plain JavaScript on a block whose amax is 127 (so id = 1 and x·id is
// x exactly), with halves, near-halves and negatives.
import { describe, expect, it } from "vitest";
import { Q8X_GPUJS, Q8X_GPUJS_AT, quantizeActivations } from "./q8-activations.ts";

function gpujsQuantize(x: Float32Array): number[] {
  const text = `${Q8X_GPUJS}\nconst out = [];\nfor (let $j = 0; $j < 32; $j++) {\n${Q8X_GPUJS_AT}\nout.push($qx);\n}\nreturn out;`;
  return new Function("x", text.replace(/\$x\[/g, "x[").replace(/\$/g, "_"))(x) as number[];
}

describe("q8 activations: the gpujs quantizer", () => {
  it("rounds half to even, as the reference", () => {
    const vals = [127, 0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 125.5, -126.5, 0.49999997, -0.49999997, 0, 3.2, -7.7];
    const x = Float32Array.from({ length: 32 }, (_, i) => vals[i % vals.length]!);
    // (+ 0: −0 and 0 are the same integer.)
    const want = Array.from(quantizeActivations(x), (v) => v + 0);
    expect(gpujsQuantize(x).map((v) => v + 0)).toEqual(want);
    expect(want.slice(1, 7)).toEqual([0, 0, 2, -2, 2, -2]);
  });
});
