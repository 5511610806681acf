// The prefetch guess: while layer N runs, which experts will layer N+1's router pick? The residual stream
// changes little from one layer to the next, so feed the current hidden state through the next layer's
// RMS norm and router as if layer N+1's attention added nothing, and take the top-k. The guess is only
// used to load experts early; a wrong guess costs a load, never a wrong token.
import { getScheme } from "../quant/registry.ts";

/** A router's rows as f32, [experts, hidden] row-major, from its packed bytes in `scheme`. */
export function decodeRouter(
  bytes: Uint8Array,
  scheme: string,
  experts: number,
  hidden: number,
): Float32Array {
  const s = getScheme(scheme);
  const want = ((experts * hidden) / s.blockSize) * s.blockBytes;
  if (hidden % s.blockSize !== 0 || bytes.length !== want) {
    throw new RangeError(
      `router of ${experts} × ${hidden} in ${scheme} takes ${want} bytes, given ${bytes.length}`,
    );
  }
  const out = new Float32Array(experts * hidden);
  s.decode(bytes, out);
  return out;
}

/**
 * The router's logits for `x` after RMS norm: logits[e] = Σ_i router[e, i] · norm[i] · x[i] / √(mean(x²) + eps).
 * (The 1/√… factor is the same for every expert, so only `norm` changes which experts win; it is kept so
 * the logits are the ones the model computes.)
 */
export function routerLogits(
  router: Float32Array,
  norm: Float32Array,
  eps: number,
  x: Float32Array,
  out: Float32Array = new Float32Array(router.length / x.length),
): Float32Array {
  const h = x.length;
  const experts = router.length / h;
  if (!Number.isInteger(experts) || norm.length !== h || out.length < experts) {
    throw new RangeError(
      `router of ${router.length} values, norm of ${norm.length}, hidden state of ${h}: they do not match`,
    );
  }
  let ss = 0;
  for (let i = 0; i < h; i++) ss += x[i]! * x[i]!;
  const r = 1 / Math.sqrt(ss / h + eps);
  for (let e = 0; e < experts; e++) {
    let acc = 0;
    const row = e * h;
    for (let i = 0; i < h; i++) acc += router[row + i]! * norm[i]! * x[i]!;
    out[e] = acc * r;
  }
  return out;
}

/** The k largest entries' indices, largest first, the lower index first among equals (as the model's top-k). */
export function topK(values: ArrayLike<number>, k: number): number[] {
  const ids: number[] = [];
  for (let i = 0; i < values.length; i++) {
    // Insertion into the short sorted list: k is small (2 to 8), so this beats sorting every expert.
    let at = ids.length;
    while (at > 0 && values[ids[at - 1]!]! < values[i]!) at--;
    if (at < k) {
      ids.splice(at, 0, i);
      if (ids.length > k) ids.pop();
    }
  }
  return ids;
}

export interface NextRouter {
  /** f32 rows [experts, hidden] (decodeRouter). */
  router: Float32Array;
  /** The next layer's RMS-norm weight in front of its router (ffn_norm for Mixtral). */
  norm: Float32Array;
  eps: number;
}

/** The top-k experts the next layer would pick if the hidden state `x` did not change. */
export function predictExperts(
  next: NextRouter,
  x: Float32Array,
  k: number,
  scratch?: Float32Array,
): number[] {
  return topK(routerLogits(next.router, next.norm, next.eps, x, scratch), k);
}

/**
 * predictExperts without allocating, for the forward pass: the hidden state is x[xo .. xo + hidden), the
 * router's logits go to `logits` (at least `experts` long), the k ids to `out` (largest first, lower id
 * first among equals).
 */
export function predictInto(
  next: NextRouter,
  x: Float32Array,
  xo: number,
  logits: Float32Array,
  out: Int32Array,
): void {
  const { router, norm, eps } = next;
  const h = norm.length;
  const experts = router.length / h;
  let ss = 0;
  for (let i = 0; i < h; i++) ss += x[xo + i]! * x[xo + i]!;
  const r = 1 / Math.sqrt(ss / h + eps);
  for (let e = 0; e < experts; e++) {
    let acc = 0;
    const row = e * h;
    for (let i = 0; i < h; i++) acc += router[row + i]! * norm[i]! * x[xo + i]!;
    logits[e] = acc * r;
  }
  const k = out.length;
  let n = 0;
  for (let e = 0; e < experts; e++) {
    // Insertion into the short sorted list, as topK.
    let at = n;
    while (at > 0 && logits[out[at - 1]!]! < logits[e]!) at--;
    if (at >= k) continue;
    for (let j = Math.min(n, k - 1); j > at; j--) out[j] = out[j - 1]!;
    out[at] = e;
    if (n < k) n++;
  }
}
