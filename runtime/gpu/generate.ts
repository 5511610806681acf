// generate() for a GPU model: the sampling, streaming and stops of runtime/generate.ts (its Decoding), with
// each step awaited (a GPU step reads its MoE picks and logits back asynchronously); the CPU loop stays
// synchronous so its hot path has no promise per token. The prompt runs through the model's `prefill` (in
// batches on webgpu) where it has one, else token by token.
import { checkPrompt, Decoding, type GenerateOptions, type Generation } from "../generate.ts";

/** What the loop needs of a model: its context and an async step. */
export interface AsyncStepper {
  manifest: { maxContext: number };
  step(token: number, pos: number): Promise<Float32Array>;
  /** The prompt from pos0 at once (batched where the backend can); the last token's logits. */
  prefill?(tokens: readonly number[], pos0: number): Promise<Float32Array>;
}

export async function generateAsync(
  model: AsyncStepper,
  prompt: readonly number[],
  o: GenerateOptions,
): Promise<Generation> {
  const context = model.manifest.maxContext;
  checkPrompt(prompt, context);
  const t0 = performance.now();
  let logits: Float32Array = new Float32Array(0);
  if (model.prefill) logits = await model.prefill(prompt, 0);
  else for (let pos = 0; pos < prompt.length; pos++) logits = await model.step(prompt[pos]!, pos);
  const t1 = performance.now();
  const d = new Decoding(prompt, context, o);
  for (let id = d.next(logits); id !== undefined; id = d.next(logits))
    logits = await model.step(id, d.position);
  return d.finish(t0, t1);
}
