// The batched prefill on a GPU backend: walks the program's batch program (runtime/gpu/program.ts's
// GpuBatch, built by compiler/codegen/gpu/batch.ts) over a prompt in batches of up to B tokens. Per batch
// the host uploads the frame (token count, first position) and the tokens' ids; per MoE layer it reads
// back the batch's top-k ids once, groups the tokens by expert, fetches each chosen expert once (through
// the expert cache when experts are offloaded: in groups the cache holds at once, the device drained
// between groups since a miss overwrites a slot) and uploads each expert's token list. The logits are
// read back once, after the last batch, for its last token.
import type { Manifest } from "../manifest.ts";
import { type Backend, type GpuBuffer, GpuError } from "./backend.ts";
import { type Ready, readyStep } from "./forward.ts";
import type { ExpertBuffers, GpuPlaced } from "./place.ts";
import {
  type BatchBinding,
  type BatchKernelStep,
  type BatchStep,
  type GpuBatch,
  type GpuProgram,
  innerSteps,
} from "./program.ts";

/** One expert's tokens in a batch: entries are the token's index | its pick << 16. */
interface ExpertTokens {
  expert: number;
  entries: number[];
}

export class GpuPrefill {
  private readonly ready = new Map<BatchKernelStep, Ready>();
  private readonly batch: GpuBatch;
  /** Tokens per batch on this device (the arena copies placed). */
  readonly tokens: number;
  private readonly lists: GpuBuffer[];
  private readonly groups: ExpertTokens[][];
  private readonly current: (ExpertBuffers | undefined)[];
  private list: GpuBuffer | undefined;
  private readonly frame = new Uint32Array(2);
  private readonly one = new Float32Array(1);
  private readonly logits: Float32Array;

  constructor(
    readonly backend: Backend,
    readonly program: GpuProgram,
    readonly manifest: Manifest,
    readonly placed: GpuPlaced,
  ) {
    this.batch = program.batch!;
    this.tokens = placed.copies ?? 1;
    const moes = manifest.moe ?? [];
    this.groups = moes.map(() => []);
    this.current = moes.map(() => undefined);
    this.lists = Array.from({ length: this.batch.lists }, (_, e) =>
      placed.memory.materialize((this.batch.tokens + 1) * 4, `token list ${e}`),
    );
    this.logits = new Float32Array(program.logits.count);
  }

  /** Whether this device runs batches (at least two arena copies fit under its binding limit). */
  static usable(program: GpuProgram, placed: GpuPlaced): boolean {
    return !!program.batch && (placed.copies ?? 1) >= 2 && !!placed.expertsFor;
  }

  /** Makes every batch kernel's pipelines (one per weight chunk), so one that does not compile fails at load. */
  async prepare(): Promise<void> {
    const walk = async (steps: BatchStep[]) => {
      for (const s of steps) {
        if (s.op === "kernel") this.ready.set(s, await readyStep(this.backend, this.placed, this.program, s));
        else await walk(innerSteps(s));
      }
    };
    await walk(this.batch.steps);
    await walk(this.batch.tail);
  }

  private buffer(b: BatchBinding, layer: number, chunk: number, kernel: string): GpuBuffer {
    const { placed } = this;
    switch (b.kind) {
      case "weight": {
        const per = placed.weights.get(b.key);
        if (!per) throw new GpuError(this.backend.name, `weight ${b.key} is not on the device`, kernel);
        const w = per[per.length > 1 ? layer : 0]!;
        return w.buffers[Math.min(chunk, w.buffers.length - 1)]!;
      }
      case "q8":
        if (!placed.q8) throw new GpuError(this.backend.name, "no buffer for quantized activations", kernel);
        return placed.q8;
      case "kv":
        return placed.kv[b.cache * 2 + (b.slot === "v" ? 1 : 0)]![layer]!;
      case "expert": {
        const e = this.current[b.moe];
        if (!e) throw new Error(`kernel ${kernel} runs outside MoE op ${b.moe}'s experts`);
        const c = e[b.role].buffers;
        return c[Math.min(chunk, c.length - 1)]!;
      }
      case "list":
        if (!this.list) throw new Error(`kernel ${kernel} runs without a token list`);
        return this.list;
    }
  }

  private readonly args: GpuBuffer[] = [];

  /** Submits everything recorded and waits for it (a 4-byte read). */
  private async drain(): Promise<void> {
    const { placed } = this;
    await this.backend.read(placed.arena, 0, 4, placed.staging, new Uint8Array(4));
  }

  private async run(steps: BatchStep[], layer: number, n: number): Promise<void> {
    const { backend, placed } = this;
    for (const s of steps) {
      if (s.op === "loop") {
        for (let l = 0; l < s.count; l++) await this.run(s.body, l, n);
        continue;
      }
      if (s.op === "layers") {
        await this.run(s.cases[s.table[layer]!]!, layer, n);
        continue;
      }
      if (s.op === "picks") {
        const ids = new Float32Array(n * s.k);
        const bytes = new Uint8Array(ids.buffer);
        for (let at = 0; at < bytes.length; at += placed.staging.bytes) {
          const m = Math.min(placed.staging.bytes, bytes.length - at);
          await backend.read(placed.arena, s.gather * 4 + at, m, placed.staging, bytes.subarray(at, at + m));
        }
        const by = new Map<number, number[]>();
        for (let t = 0; t < n; t++) {
          for (let j = 0; j < s.k; j++) {
            const e = ids[t * s.k + j]!;
            let list = by.get(e);
            if (!list) by.set(e, (list = []));
            list.push(t | (j << 16));
          }
        }
        this.groups[s.moe] = [...by.entries()]
          .sort(([a], [b]) => a - b)
          .map(([expert, entries]) => ({ expert, entries }));
        continue;
      }
      if (s.op === "experts") {
        const used = this.groups[s.moe]!;
        const per = Math.max(1, Math.min(used.length, placed.expertGroup![s.moe]!));
        const bufs: ExpertBuffers[] = [];
        for (let a = 0; a < used.length; a += per) {
          const part = used.slice(a, a + per);
          // A cache miss rewrites a slot the previous group's kernels read: let them finish first.
          if (a > 0) await this.drain();
          placed.expertsFor!(
            s.moe,
            layer,
            part.map((u) => u.expert),
            bufs,
          );
          for (let i = 0; i < part.length; i++) {
            const u = part[i]!;
            const list = this.lists[u.expert]!;
            placed.memory.upload(list, Uint32Array.from([u.entries.length, ...u.entries]), 0, "activations");
            this.list = list;
            this.current[s.moe] = bufs[i];
            await this.run(s.body, layer, n);
          }
        }
        this.current[s.moe] = undefined;
        this.list = undefined;
        continue;
      }
      const r = this.ready.get(s)!;
      for (let d = 0; d < r.pipelines.length; d++) {
        const args = this.args;
        args.length = 0;
        args.push(placed.arena, placed.frame);
        for (const b of s.bind) args.push(this.buffer(b, layer, r.chunks[d]!, s.kernel));
        const g = r.grids[d]!;
        backend.dispatch(r.pipelines[d]!, args, s.perToken ? [g[0], g[1], n] : g);
      }
    }
  }

  /** `tokens` at positions pos0, pos0 + 1, … through the model in batches, every KV row written; resolves
   * to the last token's logits (this object's own array, reused). */
  async prefill(tokens: readonly number[], pos0: number): Promise<Float32Array> {
    const m = this.manifest;
    if (tokens.length === 0) throw new RangeError("prefill of no tokens");
    for (const t of tokens) {
      if (!(t >= 0 && t < m.vocab && Number.isInteger(t)))
        throw new RangeError(`token ${t} is outside the vocabulary of ${m.vocab}`);
    }
    if (!Number.isInteger(pos0) || pos0 < 0 || pos0 + tokens.length > m.maxContext) {
      throw new RangeError(
        `positions ${pos0}..${pos0 + tokens.length - 1} are outside the context of ${m.maxContext}`,
      );
    }
    const { placed } = this;
    const stride = this.batch.stride;
    for (let i = 0; i < tokens.length; i += this.tokens) {
      const n = Math.min(this.tokens, tokens.length - i);
      // The previous batch's kernels read the frame and the token ids: let them finish first.
      if (i > 0) await this.drain();
      this.frame[0] = n;
      this.frame[1] = pos0 + i;
      placed.memory.upload(placed.frame, this.frame, 0, "activations");
      for (let t = 0; t < n; t++) {
        this.one[0] = tokens[i + t]!;
        placed.memory.upload(placed.arena, this.one, (t * stride + this.batch.tko) * 4, "activations");
      }
      await this.run(this.batch.steps, 0, n);
      if (i + n === tokens.length) await this.run(this.batch.tail, 0, n);
    }
    const { offset, count } = this.program.logits;
    await this.backend.read(
      placed.arena,
      offset * 4,
      count * 4,
      placed.staging,
      new Uint8Array(this.logits.buffer),
    );
    return this.logits;
  }
}
