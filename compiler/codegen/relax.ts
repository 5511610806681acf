// The relaxed-SIMD twin of a WAT module: every `acc + a × b` on f32x4 becomes one fused multiply-add
// (`f32x4.relaxed_madd`). The schemes and templates are written once, in plain SIMD; this rewrite is
// the only place that knows about relaxed SIMD. The runtime picks the twin when the engine validates it.
// The integer pieces' 8-bit dot products stay plain SIMD in both builds: Node 20's V8 (11.3) computes
// `i32x4.relaxed_dot_i8x16_i7x16_add_s` wrongly (twice the sum) once a function holds eight or more of
// them live, which every matrix-matrix kernel does.

export type Sexp = string | Sexp[];

export function parse(text: string): Sexp[] {
  const tokens = text.replace(/;;[^\n]*/g, "").match(/\(|\)|"(?:[^"\\]|\\.)*"|[^\s()]+/g) ?? [];
  const stack: Sexp[][] = [[]];
  for (const t of tokens) {
    if (t === "(") stack.push([]);
    else if (t === ")") {
      const list = stack.pop()!;
      stack.at(-1)!.push(list);
    } else stack.at(-1)!.push(t);
  }
  return stack[0]!;
}

export const print = (e: Sexp): string => (typeof e === "string" ? e : `(${e.map(print).join(" ")})`);

const isMul = (e: Sexp): e is Sexp[] => Array.isArray(e) && e[0] === "f32x4.mul" && e.length === 3;

function rewrite(e: Sexp): Sexp {
  if (typeof e === "string") return e;
  const list = e.map(rewrite);
  if (list[0] === "f32x4.add" && list.length === 3) {
    const [, a, b] = list;
    if (isMul(b!)) return ["f32x4.relaxed_madd", b[1]!, b[2]!, a!];
    if (isMul(a!)) return ["f32x4.relaxed_madd", a[1]!, a[2]!, b!];
  }
  return list;
}

/** The module with fused multiply-adds, and how many it fused (0: no twin is worth shipping). */
export function relaxWat(text: string): { text: string; fused: number } {
  const out = parse(text).map(rewrite).map(print).join("\n");
  return { text: out, fused: out.split("f32x4.relaxed_madd").length - 1 };
}
