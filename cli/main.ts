// moec's command line. Each command lives in cli/commands/; this file only wires flags to them.
import { Command } from "commander";
import { loadSchemePlugins } from "../runtime/quant/plugin.ts";
import { CHAT_DEFAULTS, chatCommand } from "./commands/chat.ts";
import { checkCommand } from "./commands/check.ts";
import { compileCommand } from "./commands/compile.ts";
import { demoCommand } from "./commands/demo.ts";
import { importCommand } from "./commands/import.ts";
import { inspectCommand } from "./commands/inspect.ts";
import { planCommand } from "./commands/plan.ts";
import { quantizeCommand } from "./commands/quantize.ts";
import { runCommand } from "./commands/run.ts";
import { schemesCommand } from "./commands/schemes.ts";
import { MAX_BODY_DEFAULT, serveCommand } from "./commands/serve.ts";
import { tokenizeCommand } from "./commands/tokenize.ts";
import { guarded } from "./user-error.ts";

// `moec ... | head` closes the pipe early; that is the reader's choice, not an error.
process.stdout.on("error", (e: NodeJS.ErrnoException) => {
  if (e.code === "EPIPE") process.exit(0);
  throw e;
});

const program = new Command()
  .name("moec")
  .description("A compiler and runtime for Mixture-of-Experts language models")
  .showHelpAfterError()
  .exitOverride((err) => {
    // Commander's own usage errors: its message is already printed; exit like any user error.
    process.exit(err.exitCode === 0 ? 0 : 1);
  })
  // Global, so every command (and its position on the command line) accepts it.
  .option(
    "--plugin <file>",
    "load a quantization scheme plugin (a .ts/.js module) before the command; repeatable",
    (file: string, prev: string[]) => [...prev, file],
    [] as string[],
  )
  .hook("preAction", async () => {
    const files = program.opts<{ plugin: string[] }>().plugin;
    if (files.length === 0) return;
    let ok = false;
    await guarded(async () => {
      await loadSchemePlugins(files);
      ok = true;
    })();
    if (!ok) process.exit(process.exitCode ?? 1);
  });

program
  .command("inspect")
  .description("parameters, active parameters, FLOPs, KV-cache and weight bytes of a spec")
  .argument(
    "<spec>",
    "a .moe file, or a checkpoint (a .gguf file, a Hugging Face folder) to import the spec from",
  )
  .option("--quant <name>", "a quantization block of the spec, or a scheme applied to every matrix")
  .option("--model <name>", "which model of the spec (default: the first)")
  .option(
    "--kv-type <type>",
    "the KV cache type its bytes per token are counted in: f16 (default), f32 or q8_0",
  )
  .option("--json", "print one JSON object")
  .action(guarded(inspectCommand));

program
  .command("check")
  .description("validate a spec: prints `ok` or the errors")
  .argument("<spec>", "a .moe file")
  .option("--json", "print one JSON object: ok, the models, quantizations and targets, or the errors")
  .action(guarded(checkCommand));

program
  .command("compile")
  .description("compile a spec to specialized kernels, a forward pass and a memory plan")
  .argument(
    "<spec>",
    "a .moe file, or a checkpoint (a .gguf file, a Hugging Face folder) to import the spec from",
  )
  .option(
    "--quant <name>",
    "a quantization block of the spec, or one scheme for every matrix (default: the spec's first block for the model, else f32)",
  )
  .option("--target <name>", "a target of the spec (default: the first, if any)")
  .option("--model <name>", "which model of the spec (default: the first)")
  .option("-o, --out <dir>", "output directory (default: generated/<model>)")
  .option("--dump-ir [pass]", "print the IR after every pass, or after one")
  .option("--backend <name>", "cpu, webgpu or gpujs (default: the target's, else cpu)")
  .option(
    "--kv-type <type>",
    "the KV cache's element type: f16 (default), f32 or q8_0 (default: the target's kv_type)",
  )
  .option("--json", "print the summary as one JSON object (and the IR of --dump-ir as its `ir`)")
  .action(guarded(compileCommand));

program
  .command("import")
  .description("write a spec from a checkpoint: a GGUF file's metadata or a Hugging Face config.json")
  .argument("<checkpoint>", "a .gguf file, a config.json, or a folder holding one")
  .option("-o, --out <spec>", "the .moe file to write (default: print the spec)")
  .option("--name <model>", "the model's name in the spec (default: from the checkpoint)")
  .option("--json", "print one JSON object: the model's shape, and the spec (without -o) or its file")
  .action(guarded(importCommand));

program
  .command("quantize")
  .description(
    "re-quantize a GGUF checkpoint: a llama.cpp preset, one scheme for every matrix, or per-weight rules from a spec",
  )
  .argument("<in>", "the GGUF file to read")
  .option("-o, --out <file>", "the GGUF file to write (atomically)")
  .option(
    "--preset <name>",
    "llama.cpp's mix: Q2_K, Q3_K_S/M/L, Q4_K_S/M, Q5_K_S/M, Q6_K, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, F16, BF16, F32",
  )
  .option("--scheme <name>", "the scheme for every matrix no rule names (see `moec schemes`)")
  .option("--rules <spec>", "a .moe spec whose quantization block gives per-weight schemes")
  .option("--quant <name>", "which quantization block of --rules (default: the first for the model)")
  .option("--model <name>", "which model of --rules (default: the first)")
  .option("--json", "print the report as one JSON object")
  .action(guarded(quantizeCommand));

program
  .command("schemes")
  .description("list the registered quantization schemes: bits per weight, block layout, description")
  .option("--json", 'print one JSON object: {"schemes": [...]}')
  .action(guarded(schemesCommand));

program
  .command("plan")
  .description(
    "what goes where on a target: weights, experts resident vs offloaded, KV cache, arena, headroom",
  )
  .argument(
    "<spec>",
    "a .moe file, or a checkpoint (a .gguf file, a Hugging Face folder) to import the spec from",
  )
  .option("--quant <name>", "a quantization block of the spec, or one scheme for every matrix")
  .option("--vram <size>", "the device budget, e.g. 24GiB (default: the target's)")
  .option("--context <n>", "the context to plan the KV cache for (default: the target's max_context)")
  .option("--target <name>", "a target of the spec (default: the first)")
  .option("--model <name>", "which model of the spec (default: the first)")
  .option("--json", "print the plan (or --table) as one JSON object")
  .option("--table", "memory needed per scheme and context, fully resident")
  .option(
    "--parallel <n>",
    "sequences with their own KV caches, as `moec serve --parallel` keeps (default 1)",
  )
  .option("--html <file>", "also draw the plan as a page")
  .option(
    "--backend <name>",
    "plan the allocations of cpu, webgpu or gpujs (default: the target's, else cpu)",
  )
  .option(
    "--kv-type <type>",
    "the KV cache's element type: f16 (default), f32 or q8_0 (default: the target's kv_type)",
  )
  .action(guarded(planCommand));

program
  .command("run")
  .description(
    "generate text: a compiled DIR, a SPEC compiled in memory, or a checkpoint alone (FILE.gguf, a Hugging Face folder, or --weights): the spec is imported from it",
  )
  .argument("[model]", "a directory from `moec compile`, a .moe spec, a .gguf file or a Hugging Face folder")
  .option(
    "--weights <path>",
    "the checkpoint: a .gguf file, or a Hugging Face folder (config.json, tokenizer.json, safetensors)",
  )
  .option("-p, --prompt <text>", "the prompt", "Once upon a time")
  .option("-n, --tokens <n>", "how many tokens to generate at most", "64")
  .option("--temperature <t>", "0 is greedy", "0.8")
  .option("--top-k <k>", "keep the k most likely tokens (0: all)", "40")
  .option("--top-p <p>", "keep the smallest set whose probability reaches p", "0.95")
  .option("--min-p <p>", "drop tokens below p × the best one's probability", "0.05")
  .option("--repeat-penalty <r>", "divide the logits of recent tokens by r", "1")
  .option("--seed <s>", "makes sampling reproducible", "0")
  .option("--context <n>", "max context (default: the target's, else the model's)")
  .option("--stop <text...>", "stop strings")
  .option("--json", "print one JSON object: prompt_tokens, tokens, text, stop, timings, memory")
  .option("--chat", "the prompt is a user message, rendered with the model's chat template")
  .option("--quant <scheme>", "for a safetensors checkpoint: the scheme of every matrix (default f32)")
  .option("--threads <n>", "threads for the kernels (default: every core)")
  .option(
    "--vram <size>",
    "device memory budget, e.g. 512MiB; experts that do not fit go to an expert cache (default and most: the CPU heap's 4 GiB)",
  )
  .option(
    "--host-memory <size>",
    "host memory for the offloaded experts; when they need more, they are read from the GGUF file",
  )
  .option("--policy <name>", "expert cache eviction: lru (default) or lfu")
  .option("--no-prefetch", "do not load the next layer's guessed experts ahead of their use")
  .option("--stats", "print the device peak, expert cache hits, misses and bytes loaded")
  .option(
    "--backend <name>",
    "cpu (default), webgpu (WGSL through dawn.node) or gpujs; a GPU backend that cannot run says why, it never falls back",
  )
  .option(
    "--kv-type <type>",
    "the KV cache's element type: f16 (default), f32 or q8_0 (default: the target's kv_type)",
  )
  .action(guarded(runCommand));

/** The model flags `serve` and `chat` share with `run` (same meanings and defaults). */
const withModelFlags = (c: Command) =>
  c
    .argument("<model>", "a .gguf file, a Hugging Face folder, or a compiled DIR / .moe spec with --weights")
    .option("--weights <path>", "the checkpoint, when MODEL is a compiled directory or a spec")
    .option("--context <n>", "max context per sequence (default: the target's, else the model's)")
    .option("--chat-template <file>", "a Jinja chat template to use instead of the model's")
    .option("--quant <scheme>", "for a safetensors checkpoint: the scheme of every matrix (default f32)")
    .option("--threads <n>", "threads for the kernels (default: every core)")
    .option("--vram <size>", "device memory budget; experts that do not fit go to an expert cache")
    .option("--host-memory <size>", "host memory for the offloaded experts")
    .option("--policy <name>", "expert cache eviction: lru (default) or lfu")
    .option("--no-prefetch", "do not load the next layer's guessed experts ahead of their use")
    .option("--backend <name>", "cpu (default), webgpu or gpujs")
    .option("--kv-type <type>", "the KV cache's element type: f16 (default), f32 or q8_0");

withModelFlags(
  program
    .command("serve")
    .description(
      "serve a model over OpenAI's HTTP API: /v1/chat/completions, /v1/completions, /v1/models, /health",
    ),
)
  .option("--host <host>", "the address to listen on", "127.0.0.1")
  .option("--port <n>", "the port (0: any free one)", "8080")
  .option("--parallel <n>", "requests generated at once, each with its own KV cache", "1")
  .option("--max-queue <n>", "requests waiting for a slot before 503", "64")
  .option("--api-key <key>", "require Authorization: Bearer KEY on /v1/*")
  .option("--max-body <size>", "largest request body; larger is 413", MAX_BODY_DEFAULT)
  .action(guarded(serveCommand));

withModelFlags(
  program
    .command("chat")
    .description("chat with a model in the terminal: its chat template, history and streaming"),
)
  .option("--system <text>", "the system message")
  .option("-n, --tokens <n>", "the longest reply in tokens", String(CHAT_DEFAULTS.maxTokens))
  .option("--temperature <t>", "0 is greedy", String(CHAT_DEFAULTS.temperature))
  .option("--top-k <k>", "keep the k most likely tokens (0: all)", String(CHAT_DEFAULTS.topK))
  .option("--top-p <p>", "keep the smallest set whose probability reaches p", String(CHAT_DEFAULTS.topP))
  .option("--min-p <p>", "drop tokens below p × the best one's probability", String(CHAT_DEFAULTS.minP))
  .option(
    "--repeat-penalty <r>",
    "divide the logits of recent tokens by r",
    String(CHAT_DEFAULTS.repeatPenalty),
  )
  .option("--seed <s>", "makes sampling reproducible", String(CHAT_DEFAULTS.seed))
  .action(guarded(chatCommand));

program
  .command("tokenize")
  .description("print the ids and pieces a model's tokenizer gives a prompt (BOS as the model adds it)")
  .argument("<model>", "a .gguf file (vocabulary-only ones too) or a Hugging Face folder")
  .requiredOption("-p, --prompt <text>", "the text to tokenize")
  .option("--json", 'print {"tokens": [ids]}')
  .action(guarded(tokenizeCommand));

program
  .command("demo")
  .description(
    "upcycle the shipped stories260K (a small trained model) to a Mixtral-style MoE (cached), compile it and generate through the expert cache: no download needed",
  )
  .option("-p, --prompt <text>", "the prompt", "Once upon a time")
  .option("-n, --tokens <n>", "how many tokens to generate", "48")
  .option("--json", "print run's JSON object, with a `demo` object describing the model")
  .action(guarded(demoCommand));

await program.parseAsync(process.argv);
