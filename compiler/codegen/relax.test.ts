import { describe, expect, it } from "vitest";
import { relaxWat } from "./relax.ts";

describe("relaxWat", () => {
  it("fuses acc + a × b in either operand order, nested too, and leaves other code alone", () => {
    const wat = `(module ;; a comment
      (func (local.set $acc (f32x4.add (local.get $acc) (f32x4.mul (local.get $a) (v128.load (local.get $x))))))
      (func (f32x4.add (f32x4.mul (local.get $a) (local.get $b)) (f32x4.add (local.get $c) (f32x4.mul (local.get $d) (local.get $e)))))
      (func (f32x4.add (local.get $a) (local.get $b)) (i32.add (i32.const 1) (i32.const 2))))`;
    const { text, fused } = relaxWat(wat);
    expect(fused).toBe(3);
    expect(text).toBe(
      [
        "(module",
        " (func (local.set $acc (f32x4.relaxed_madd (local.get $a) (v128.load (local.get $x)) (local.get $acc))))",
        " (func (f32x4.relaxed_madd (local.get $a) (local.get $b) (f32x4.relaxed_madd (local.get $d) (local.get $e) (local.get $c))))",
        " (func (f32x4.add (local.get $a) (local.get $b)) (i32.add (i32.const 1) (i32.const 2))))",
      ].join(""),
    );
  });
});
