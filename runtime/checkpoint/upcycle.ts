// Upcycling: a dense llama-architecture GGUF turned into a Mixtral-architecture MoE GGUF, so that a small
// trained model (models/stories260K.gguf) can exercise the MoE path with real weights: the tests compare
// moec with llama.cpp on such files, and `moec demo` runs one.
//
// Each layer's FFN becomes `experts` experts, each the dense FFN with every weight multiplied by
// (1 + noise · N(0, 1)) from a seeded stream, so that the experts differ and which ones the router picks
// changes the result; the router (`blk.N.ffn_gate_inp.weight`, f32) is random, N(0, routerScale² / hidden).
// With a small noise the model still writes what the dense one does, in other words.
//
// The experts are stored as llama.cpp expects them: `blk.N.ffn_{gate,up,down}_exps.weight`, stacked with
// the expert as the slowest dimension (ggml dims [in, out, experts]), in the dense tensor's type; the
// metadata is the dense file's with `llama.expert_count` and `llama.expert_used_count` added. Every other
// tensor is copied byte for byte. The file is written by moec's own GGUF writer, atomically, one tensor at
// a time.
import { getScheme } from "../quant/registry.ts";
import { gaussian, rng } from "../weights.ts";
import { CheckpointError } from "./errors.ts";
import { type GgufFile, type GgufTensorInfo, openGguf } from "./gguf-read.ts";
import { type GgufValue, gv } from "./gguf-value.ts";
import { type GgufLazyTensorInput, type GgufWriteResult, writeGguf } from "./gguf-write.ts";

export interface UpcycleOptions {
  /** Experts per layer (llama.expert_count). */
  experts: number;
  /** Experts used per token (llama.expert_used_count). */
  topK: number;
  /** Seeds the experts' perturbation and the router (default 1). */
  seed?: number;
  /** Relative size of each weight's perturbation (default 0.05). */
  noise?: number;
  /** The router's standard deviation times √hidden (default 1). */
  routerScale?: number;
  /** general.name of the output (default: the input's, with " (upcycled to E experts, top-k)"). */
  name?: string;
}

const FFN = ["gate", "up", "down"] as const;

/** What the writer needs to know about one stacked expert tensor. */
interface Stack {
  name: string;
  dense: GgufTensorInfo;
  layer: number;
  which: (typeof FFN)[number];
}

function checkDense(file: GgufFile, o: UpcycleOptions, outPath: string): number {
  const fail = (problem: string, what?: string, whatKind?: "key" | "tensor"): never => {
    throw new CheckpointError({ file: file.path, what, whatKind, problem });
  };
  if (!Number.isInteger(o.experts) || o.experts < 1) {
    throw new CheckpointError({ file: outPath, problem: `experts must be 1 or more, not ${o.experts}` });
  }
  if (!Number.isInteger(o.topK) || o.topK < 1 || o.topK > o.experts) {
    throw new CheckpointError({
      file: outPath,
      problem: `topK must be from 1 to experts (${o.experts}), not ${o.topK}`,
    });
  }
  const arch = file.metadata.get("general.architecture");
  if (arch?.type !== "string" || arch.value !== "llama") {
    fail("upcycling reads llama-architecture files", "general.architecture", "key");
  }
  if (file.metadata.has("llama.expert_count")) {
    fail("the file is already a mixture of experts", "llama.expert_count", "key");
  }
  const blocks = file.metadata.get("llama.block_count");
  if (blocks?.type !== "u32" && blocks?.type !== "i32" && blocks?.type !== "u64") {
    fail("missing or not an integer", "llama.block_count", "key");
  }
  const layers = Number(blocks!.value);
  const hidden = file.findTensor("token_embd.weight")?.dims[0];
  if (hidden === undefined) fail("missing: the hidden size is read from it", "token_embd.weight", "tensor");
  for (let l = 0; l < layers; l++) {
    for (const w of FFN) {
      const name = `blk.${l}.ffn_${w}.weight`;
      const t = file.findTensor(name);
      if (!t) fail("missing: a dense FFN weight to upcycle", name, "tensor");
      if (t!.dims.length !== 2) fail(`dims are [${t!.dims.join(", ")}], expected a matrix`, name, "tensor");
    }
  }
  return hidden!;
}

/** Writes an MoE upcycled from the dense GGUF at `inPath` to `outPath` (atomically). */
export function upcycleGguf(inPath: string, outPath: string, o: UpcycleOptions): GgufWriteResult {
  const file = openGguf(inPath);
  try {
    const hidden = checkDense(file, o, outPath);
    const seed = o.seed ?? 1;
    const noise = o.noise ?? 0.05;
    const routerScale = o.routerScale ?? 1;
    const E = o.experts;
    const ffnName = /^blk\.(\d+)\.ffn_(gate|up|down)\.weight$/;
    const f32 = getScheme("f32");

    const tensors: GgufLazyTensorInput[] = [];
    for (const info of file.tensors) {
      const m = ffnName.exec(info.name);
      if (!m) {
        tensors.push({
          name: info.name,
          dims: info.dims,
          type: info.type,
          nbytes: info.nbytes,
          produce: () => file.read(info),
        });
        continue;
      }
      const layer = Number(m[1]);
      const which = m[2] as Stack["which"];
      if (which === "gate") {
        // The router goes before the layer's experts, as llama.cpp's converter orders them.
        const name = `blk.${layer}.ffn_gate_inp.weight`;
        tensors.push({
          name,
          dims: [hidden, E],
          type: f32.ggmlType!,
          nbytes: hidden * E * 4,
          produce: () => {
            const g = gaussian(rng((seed * 7919 + layer * 104729 + 17) >>> 0));
            const v = new Float32Array(hidden * E);
            const std = routerScale / Math.sqrt(hidden);
            for (let i = 0; i < v.length; i++) v[i] = std * g();
            return new Uint8Array(v.buffer);
          },
        });
      }
      tensors.push(stacked({ name: `blk.${layer}.ffn_${which}_exps.weight`, dense: info, layer, which }));
    }

    function stacked(s: Stack): GgufLazyTensorInput {
      const { dense } = s;
      const per = dense.elements;
      const scheme = dense.scheme;
      const perBytes = (per / scheme.blockSize) * scheme.blockBytes;
      return {
        name: s.name,
        dims: [...dense.dims, E],
        type: dense.type,
        nbytes: perBytes * E,
        produce: () => {
          const base = new Float32Array(per);
          scheme.decode(file.read(dense), base);
          const out = new Uint8Array(perBytes * E);
          const v = new Float32Array(per);
          const which = FFN.indexOf(s.which);
          for (let e = 0; e < E; e++) {
            const g = gaussian(rng((seed * 31337 + s.layer * 8191 + which * 131 + e * 7 + 1) >>> 0));
            for (let i = 0; i < per; i++) v[i] = base[i]! * (1 + noise * g());
            scheme.encode(v, out.subarray(e * perBytes, (e + 1) * perBytes));
          }
          return out;
        },
      };
    }

    const metadata: [string, GgufValue][] = [];
    const oldName = file.metadata.get("general.name");
    const name =
      o.name ??
      `${oldName?.type === "string" ? oldName.value : "model"} (upcycled to ${E} experts, top-${o.topK})`;
    for (const [k, v] of file.metadata) {
      if (k === "general.name") continue;
      metadata.push([k, v]);
      if (k === "general.architecture") metadata.push(["general.name", gv.str(name)]);
      if (k === "llama.feed_forward_length") {
        metadata.push(["llama.expert_count", gv.u32(E)], ["llama.expert_used_count", gv.u32(o.topK)]);
      }
    }
    if (!file.metadata.has("llama.feed_forward_length")) {
      metadata.push(["llama.expert_count", gv.u32(E)], ["llama.expert_used_count", gv.u32(o.topK)]);
    }
    return writeGguf(outPath, { metadata, tensors });
  } finally {
    file.close();
  }
}
