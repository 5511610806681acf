// Runs the generations of every caller on one model: up to `sequences` at once, each in its own
// sequence slot (its own KV caches), the rest waiting in a bounded queue. A round gives each generation
// still reading its prompt one chunk of it, then steps every decoding generation together (one batched
// step where the model has one), and yields to the event loop, so a request arriving mid-way joins at the
// next round (continuous batching), and I/O and abort signals are served between rounds. A generation's
// answer does not depend on what else runs: its KV caches and sampler are its own, and a batched step
// gives each sequence the logits it gets alone.
import { Decoding, type GenerateOptions, type Generation } from "../runtime/generate.ts";
import { AbortError, ModelClosedError, QueueFullError } from "./errors.ts";

/** What the scheduler needs of a loaded model; logits are valid until the next call. */
export interface Stepper {
  readonly sequences: number;
  readonly maxContext: number;
  /** Prompt tokens per prefill call: a long prompt is fed in chunks so other sequences keep decoding. */
  readonly prefillChunk: number;
  prefill(seq: number, tokens: readonly number[], pos0: number): Float32Array | Promise<Float32Array>;
  step(seq: number, token: number, pos: number): Float32Array | Promise<Float32Array>;
  /** One token for each of several sequences at once; each one's logits. Absent: step them one by one. */
  stepBatch?(
    seqs: readonly number[],
    tokens: readonly number[],
    positions: readonly number[],
  ): Float32Array[] | Promise<Float32Array[]>;
}

interface Job {
  prompt: readonly number[];
  options: GenerateOptions;
  signal: AbortSignal | undefined;
  resolve(g: Generation): void;
  reject(e: unknown): void;
  seq: number;
  prefilled: number;
  decoding?: Decoding;
  next?: number;
  t0: number;
  t1: number;
  detach(): void;
}

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

export class Scheduler {
  private readonly free: number[];
  private readonly active: Job[] = [];
  private readonly waiting: Job[] = [];
  private loop: Promise<void> | undefined;
  private closed = false;

  constructor(
    private readonly model: Stepper,
    readonly maxQueue: number,
  ) {
    this.free = Array.from({ length: model.sequences }, (_, i) => model.sequences - 1 - i);
  }

  /** Generations running and waiting: what a health check reports. */
  get load(): { active: number; waiting: number; slots: number } {
    return { active: this.active.length, waiting: this.waiting.length, slots: this.model.sequences };
  }

  /** Generates after `prompt` (checked by the caller); rejects with AbortError, QueueFullError or ModelClosedError. */
  submit(prompt: readonly number[], options: GenerateOptions, signal?: AbortSignal): Promise<Generation> {
    if (this.closed) return Promise.reject(new ModelClosedError());
    if (signal?.aborted) return Promise.reject(new AbortError(signal.reason));
    // Jobs not yet admitted take the free slots first; beyond them, at most maxQueue wait.
    if (this.waiting.length >= this.free.length + this.maxQueue) {
      return Promise.reject(new QueueFullError(this.model.sequences, this.maxQueue));
    }
    return new Promise<Generation>((resolve, reject) => {
      const onAbort = () => {
        // A waiting job leaves at once; a running one stops before its next step (the loop sees the signal).
        const i = this.waiting.indexOf(job);
        if (i >= 0) {
          this.waiting.splice(i, 1);
          job.detach();
          reject(new AbortError(signal!.reason));
        }
      };
      const job: Job = {
        prompt,
        options,
        signal,
        resolve,
        reject,
        seq: -1,
        prefilled: 0,
        t0: 0,
        t1: 0,
        detach: () => signal?.removeEventListener("abort", onAbort),
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.waiting.push(job);
      this.loop ??= this.run().finally(() => {
        this.loop = undefined;
      });
    });
  }

  /** Rejects every job with ModelClosedError and waits for the step in progress to end. */
  async close(): Promise<void> {
    this.closed = true;
    for (const job of this.waiting.splice(0)) this.fail(job, new ModelClosedError());
    for (const job of [...this.active]) this.fail(job, new ModelClosedError());
    await this.loop;
  }

  private async run(): Promise<void> {
    while (this.active.length || this.waiting.length) {
      while (this.free.length && this.waiting.length) {
        const job = this.waiting.shift()!;
        job.seq = this.free.pop()!;
        job.t0 = performance.now();
        this.active.push(job);
      }
      const decoding: Job[] = [];
      for (const job of [...this.active]) {
        if (!this.active.includes(job)) continue; // settled by close() during an awaited step
        if (job.signal?.aborted) {
          this.fail(job, new AbortError(job.signal.reason));
          continue;
        }
        if (job.prefilled >= job.prompt.length) {
          decoding.push(job);
          continue;
        }
        try {
          await this.prefillChunk(job);
        } catch (e) {
          this.fail(job, e);
        }
      }
      await this.decode(decoding.filter((job) => this.active.includes(job)));
      await nextTurn();
    }
  }

  /** The next chunk of the job's prompt; after the last one, its first token. */
  private async prefillChunk(job: Job): Promise<void> {
    const chunk = job.prompt.slice(job.prefilled, job.prefilled + this.model.prefillChunk);
    const logits = await this.model.prefill(job.seq, chunk, job.prefilled);
    job.prefilled += chunk.length;
    if (job.prefilled < job.prompt.length) return;
    job.t1 = performance.now();
    job.decoding = new Decoding(job.prompt, this.model.maxContext, job.options);
    this.accept(job, logits);
  }

  /** One token for every decoding job: one batched step where the model has it. */
  private async decode(jobs: Job[]): Promise<void> {
    if (!jobs.length) return;
    const { stepBatch } = this.model;
    if (jobs.length === 1 || !stepBatch) {
      for (const job of jobs) {
        if (!this.active.includes(job)) continue;
        try {
          this.accept(job, await this.model.step(job.seq, job.next!, job.decoding!.position));
        } catch (e) {
          this.fail(job, e);
        }
      }
      return;
    }
    let all: Float32Array[];
    try {
      all = await stepBatch.call(
        this.model,
        jobs.map((j) => j.seq),
        jobs.map((j) => j.next!),
        jobs.map((j) => j.decoding!.position),
      );
    } catch (e) {
      for (const job of jobs) this.fail(job, e);
      return;
    }
    jobs.forEach((job, i) => {
      if (this.active.includes(job)) this.accept(job, all[i]!);
    });
  }

  /** Samples the job's next token from its logits; resolves the job when its generation ends. */
  private accept(job: Job, logits: Float32Array): void {
    if (!this.active.includes(job)) return;
    job.next = job.decoding!.next(logits);
    if (job.next === undefined) {
      this.release(job);
      job.resolve(job.decoding!.finish(job.t0, job.t1));
    }
  }

  private fail(job: Job, e: unknown): void {
    this.release(job);
    job.reject(e);
  }

  /** Frees the job's sequence slot (if it had one) and its abort listener. */
  private release(job: Job): void {
    const i = this.active.indexOf(job);
    if (i >= 0) {
      this.active.splice(i, 1);
      this.free.push(job.seq);
    }
    job.detach();
  }
}
