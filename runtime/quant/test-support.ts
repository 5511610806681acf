// Shared by the quantization tests: deterministic data.

/** A deterministic PRNG (mulberry32) giving floats in [0, 1). */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** n samples of N(0, sigma²) (Box–Muller), deterministic in seed. */
export function gaussian(n: number, seed: number, sigma = 1): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const u = 1 - r();
    const v = r();
    const m = Math.sqrt(-2 * Math.log(u)) * sigma;
    out[i] = m * Math.cos(2 * Math.PI * v);
    if (i + 1 < n) out[i + 1] = m * Math.sin(2 * Math.PI * v);
  }
  return out;
}

export function rmse(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i]! - b[i]!) ** 2;
  return Math.sqrt(s / a.length);
}

/**
 * The inputs of the golden test: 2048 values each (8 k-quant super-blocks), covering plain Gaussian
 * weights, small weights with rare outliers, sparse weights with all-zero and constant blocks, and
 * one-signed data.
 */
export function goldenInputs(): Record<string, Float32Array> {
  const n = 2048;
  const gauss = gaussian(n, 7);
  const outliers = gaussian(n, 8, 0.02);
  const r = rng(9);
  for (let i = 0; i < n; i++) if (r() < 0.01) outliers[i] = outliers[i]! * 400;
  const sparse = gaussian(n, 10);
  for (let i = 0; i < n; i++) if (r() < 0.6) sparse[i] = 0;
  sparse.fill(0, 0, 256);
  sparse.fill(0.75, 256, 512);
  const positive = new Float32Array(n);
  for (let i = 0; i < n; i++) positive[i] = r() * 3 + 0.01;
  return { gauss, outliers, sparse, positive };
}

/**
 * n samples of Student's t with `nu` degrees of freedom (heavy-tailed: few large outliers), scaled to
 * unit variance (nu > 2), deterministic in seed.
 */
export function studentT(n: number, seed: number, nu = 3): Float32Array {
  const z = gaussian(n * (nu + 1), seed);
  const out = new Float32Array(n);
  const scale = Math.sqrt((nu - 2) / nu);
  for (let i = 0; i < n; i++) {
    let chi = 0;
    for (let k = 1; k <= nu; k++) chi += z[i * (nu + 1) + k]! ** 2;
    out[i] = (z[i * (nu + 1)]! / Math.sqrt(chi / nu)) * scale;
  }
  return out;
}
