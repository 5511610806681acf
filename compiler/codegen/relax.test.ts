import { describe, expect, it } from "vitest";
import { schemes } from "../../runtime/quant/index.ts";
import { q8Format } from "../../runtime/quant/q8-activations.ts";
import { byteBound, parse, print, relaxIntegers, relaxWat, type Sexp } from "./relax.ts";

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

describe("relaxIntegers", () => {
  const format = { values: 64, shadow: 96 };
  const env = (text: string) => ({ at: new Map<string, number>(), sets: new Map([["$w", parse(text)]]) });
  const byte = (n: number) => `(v128.const i8x16${` ${n}`.repeat(16)})`;
  const LOAD = "(v128.load offset=0 align=1 (local.get $p))";
  /** q8Runs' shape: weights in $v0 / $v1 against the int16 runs at 0 and 32. */
  const runs = (w0: string, w1: string, sx = "u") => {
    const run = (r: number) =>
      `(i32x4.add (i32x4.dot_i16x8_s (i16x8.extend_low_i8x16_${sx} (local.get $v${r})) (v128.load offset=${32 * r} align=4 (local.get $x))) (i32x4.dot_i16x8_s (i16x8.extend_high_i8x16_${sx} (local.get $v${r})) (v128.load offset=${32 * r + 16} align=4 (local.get $x))))`;
    return `(local.set $v0 ${w0}) (local.set $v1 ${w1}) (local.set $s (i32x4.add ${run(0)} ${run(1)}))`;
  };

  it("bounds bytes through masks, shifts, ors, adds and locals", () => {
    expect(byteBound(parse(`(v128.and ${LOAD} ${byte(15)})`)[0]!, env(""))).toBe(15);
    expect(byteBound(parse(`(i8x16.shr_u ${LOAD} (i32.const 4))`)[0]!, env(""))).toBe(15);
    expect(byteBound(parse(`(i8x16.shr_u ${LOAD} (local.get $n))`)[0]!, env(""))).toBe(255);
    expect(byteBound(parse(`(v128.or ${byte(3)} ${byte(4)})`)[0]!, env(""))).toBe(7);
    expect(byteBound(parse(`(i8x16.shl ${byte(3)} (i32.const 4))`)[0]!, env(""))).toBe(48);
    expect(byteBound(parse(`(i8x16.shl ${byte(31)} (i32.const 4))`)[0]!, env(""))).toBe(255);
    expect(byteBound(parse(`(i8x16.add ${byte(100)} ${byte(27)})`)[0]!, env(""))).toBe(127);
    expect(byteBound(parse(`(i8x16.sub ${byte(20)} ${byte(8)})`)[0]!, env(""))).toBe(255);
    expect(byteBound(parse("(local.get $w)")[0]!, env(`(v128.and ${LOAD} ${byte(63)})`))).toBe(63);
    expect(byteBound(parse("(local.get $w)")[0]!, env(LOAD))).toBe(255);
  });

  it("turns two unsigned 4-bit runs into 8-bit products against the shadow, added as int16 first", () => {
    const nibbles = `(v128.and ${LOAD} ${byte(15)})`;
    const { text, runs: n } = relaxIntegers(runs(nibbles, `(i8x16.shr_u ${LOAD} (i32.const 4))`), format);
    expect(n).toBe(2);
    expect(text).toContain(
      "(local.set $s (i32x4.extadd_pairwise_i16x8_s (i16x8.add (i16x8.relaxed_dot_i8x16_i7x16_s (v128.load offset=96 align=1 (local.get $x)) (local.get $v0)) (i16x8.relaxed_dot_i8x16_i7x16_s (v128.load offset=128 align=1 (local.get $x)) (local.get $v1)))))",
    );
  });

  it("keeps 7-bit runs apart (their int16 sum could overflow) and leaves what it cannot prove alone", () => {
    const seven = relaxIntegers(
      runs(`(v128.and ${LOAD} ${byte(127)})`, `(v128.and ${LOAD} ${byte(127)})`),
      format,
    );
    expect(seven.runs).toBe(2);
    expect(seven.text).not.toContain("i16x8.add");
    expect(seven.text.match(/i32x4\.extadd_pairwise_i16x8_s/g)).toHaveLength(2);
    // a raw byte may be 128 or more; a signed run; a run past the values (as the block's sums are)
    const masked = `(v128.and ${LOAD} ${byte(15)})`;
    expect(relaxIntegers(runs(LOAD, LOAD), format).runs).toBe(0);
    expect(relaxIntegers(runs(masked, masked, "s"), format).runs).toBe(0);
    const past = runs(masked, masked).replace("offset=32 ", "offset=64 ").replace("offset=48 ", "offset=80 ");
    expect(relaxIntegers(past, format).runs).toBe(1);
  });

  it("follows a local through the statements: a later set does not spoil an earlier use, a loop's sets do", () => {
    const masked = `(v128.and ${LOAD} ${byte(15)})`;
    const later = `${runs(masked, masked)} (local.set $v0 ${LOAD})`;
    expect(relaxIntegers(later, format).runs).toBe(2);
    // In a loop, the raw value set at its end reaches the use at its start on the next trip.
    const looped = `(loop $l ${runs(masked, masked).replace(`(local.set $v0 ${masked})`, "")} (local.set $v0 ${LOAD}) (br_if $l (local.get $c)))`;
    expect(relaxIntegers(`(local.set $v0 ${masked}) ${looped}`, format).runs).toBe(1);
  });

  it("rewrites every run of every built-in scheme's integer piece but q8_0's signed bytes", () => {
    for (const s of schemes().filter((s) => s.wasm?.q8)) {
      const format = q8Format(s.wasm!.step)!;
      const { text, runs } = relaxIntegers(s.wasm!.q8!, format);
      // Left: int16 dot products against the values (offsets below the values' end from the block or a point in it)
      const left: string[] = [];
      const visit = (e: Sexp) => {
        if (!Array.isArray(e)) return;
        if (e[0] === "i32x4.dot_i16x8_s") {
          for (const a of e.slice(1)) {
            const offset = Array.isArray(a) && a[0] === "v128.load" ? /offset=(\d+)/.exec(print(a)) : null;
            if (offset && Number(offset[1]) < format.values) left.push(print(e));
          }
        }
        e.forEach(visit);
      };
      parse(text).forEach(visit);
      if (s.name === "q8_0") {
        expect(runs, s.name).toBe(0);
        expect(left, s.name).toHaveLength(4);
      } else {
        expect(runs, s.name).toBeGreaterThan(0);
        expect(left, s.name).toEqual([]);
      }
    }
  });
});
