// A small dense spec for attention tests: heads of 32 (whole q8_0 blocks), 3 query heads per KV head, and an
// optional sliding window, written to a temporary file (compileAndLoad and compileGpuAndCpu take paths).
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export function windowSpec(window: number, context: number): string {
  const dir = mkdtempSync(join(tmpdir(), "moec-attend-"));
  const file = join(dir, `attend-w${window}.moe`);
  writeFileSync(
    file,
    `model attend_test {
  param vocab = 64, hidden = 96, layers = 2, heads = 6, kv_heads = 2, head_dim = 32, ffn = 64
  param context = ${context}, theta = 10000, eps = 1e-5
  weights {
    tok_embed : [vocab, hidden] <- "token_embd.weight"
    layer[i < layers] {
      attn_norm : [hidden] <- "blk.{i}.attn_norm.weight"
      wq : [heads * head_dim, hidden] <- "blk.{i}.attn_q.weight"
      wk : [kv_heads * head_dim, hidden] <- "blk.{i}.attn_k.weight"
      wv : [kv_heads * head_dim, hidden] <- "blk.{i}.attn_v.weight"
      wo : [hidden, heads * head_dim] <- "blk.{i}.attn_output.weight"
      ffn_norm : [hidden] <- "blk.{i}.ffn_norm.weight"
      w_gate : [ffn, hidden] <- "blk.{i}.ffn_gate.weight"
      w_up : [ffn, hidden] <- "blk.{i}.ffn_up.weight"
      w_down : [hidden, ffn] <- "blk.{i}.ffn_down.weight"
    }
    out_norm : [hidden] <- "output_norm.weight"
    lm_head : [vocab, hidden] <- "output.weight"
  }
  forward(tokens) {
    x = embed(tok_embed, tokens)
    for i < layers {
      a = rms_norm(x, layer[i].attn_norm, eps)
      q = rope(linear(a, layer[i].wq), heads: heads, theta: theta)
      k = rope(linear(a, layer[i].wk), heads: kv_heads, theta: theta)
      v = linear(a, layer[i].wv)
      x = x + linear(attention(q, k, v, heads: heads, kv_heads: kv_heads, window: ${window}), layer[i].wo)
      h = rms_norm(x, layer[i].ffn_norm, eps)
      x = x + swiglu(h, layer[i].w_gate, layer[i].w_up, layer[i].w_down)
    }
    return linear(rms_norm(x, out_norm, eps), lm_head)
  }
}
`,
  );
  return file;
}
