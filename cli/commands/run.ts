import pc from "picocolors";
import { generate } from "../../runtime/generate.ts";
import { ModelInstance } from "../../runtime/model.ts";
import { Sampler } from "../../runtime/sampler.ts";
import { tokenizerFromGguf } from "../../runtime/tokenizer/from-gguf.ts";
import { Detokenizer } from "../../runtime/tokenizer/spm.ts";
import { loadForRun } from "../model-source.ts";
import { UserError } from "../user-error.ts";

export interface RunOptions {
  weights?: string;
  prompt: string;
  tokens: string;
  temperature: string;
  topK: string;
  topP: string;
  minP: string;
  repeatPenalty: string;
  seed: string;
  context?: string;
  stop?: string[];
  json?: boolean;
}

function number(name: string, text: string, integer = false): number {
  const v = Number(text);
  if (text.trim() === "" || !Number.isFinite(v) || (integer && !Number.isInteger(v))) {
    throw new UserError(`${name}: expected ${integer ? "a whole number" : "a number"}, found \`${text}\``);
  }
  return v;
}

export async function runCommand(source: string | undefined, o: RunOptions): Promise<void> {
  if (!o.weights) throw new UserError("--weights FILE is required: the checkpoint (.gguf) to run");
  const maxTokens = number("-n", o.tokens, true);
  const sampler = {
    temperature: number("--temperature", o.temperature),
    topK: number("--top-k", o.topK, true),
    topP: number("--top-p", o.topP),
    minP: number("--min-p", o.minP),
    repetitionPenalty: number("--repeat-penalty", o.repeatPenalty),
    seed: number("--seed", o.seed, true),
  };
  const context = o.context === undefined ? undefined : number("--context", o.context, true);
  const started = performance.now();
  const loaded = await loadForRun(source, o.weights, context);
  try {
    const tokenizer = tokenizerFromGguf(loaded.file.metadata, o.weights);
    const model = new ModelInstance(loaded.module, loaded.weights);
    const loadMs = performance.now() - started;
    const prompt = tokenizer.encode(o.prompt, { addBos: tokenizer.addBos });
    const m = loaded.module.manifest;
    if (!o.json)
      process.stderr.write(pc.dim(`${m.model} (${loaded.origin}), loaded in ${loadMs.toFixed(0)} ms\n`));
    if (!o.json) process.stdout.write(o.prompt);
    const result = generate(model, prompt, {
      maxTokens,
      sampler: new Sampler(m.vocab, { ...sampler, topK: sampler.topK }),
      stopTokens: [...tokenizer.eogIds],
      stopStrings: o.stop ?? [],
      // Generated text continues the prompt, so its first space is kept (as llama.cpp streams it).
      text: new Detokenizer(tokenizer, { keepLeadingSpace: true }),
      onText: o.json ? undefined : (s) => process.stdout.write(s),
    });
    const t = result.timings;
    if (o.json) {
      const out = {
        prompt_tokens: prompt,
        tokens: result.tokens,
        text: result.text,
        stop: result.stop,
        timings: { prefill_tok_s: t.prefill_tok_s, decode_tok_s: t.decode_tok_s, load_ms: loadMs },
      };
      process.stdout.write(`${JSON.stringify(out)}\n`);
    } else {
      process.stdout.write("\n");
      process.stderr.write(
        pc.dim(
          `${prompt.length} prompt tokens at ${t.prefill_tok_s.toFixed(1)} tok/s, ${result.tokens.length} generated at ${t.decode_tok_s.toFixed(1)} tok/s (stop: ${result.stop})\n`,
        ),
      );
    }
  } finally {
    loaded.file.close();
  }
}
