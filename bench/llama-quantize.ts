// llama.cpp's own tools for the bench: llama-quantize (the preset files) and llama-batched-bench (decoding
// several sequences at once). MOEC_LLAMA_QUANTIZE names a built llama-quantize, whose directory then holds the
// others; else they are built once under the cache directory from the llama.cpp source node-llama-cpp ships
// (git, cmake and a C++ compiler; about ten minutes on two cores the first time).
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join } from "node:path";

export function cacheDir(): string {
  return join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "moec");
}

/** The path of llama.cpp's tool `target`, building it first if there is none. */
export function llamaTool(target: "llama-quantize" | "llama-batched-bench"): string {
  const given = process.env.MOEC_LLAMA_QUANTIZE;
  if (given) {
    if (!existsSync(given)) throw new Error(`MOEC_LLAMA_QUANTIZE=${given}: no such file`);
    const tool = join(dirname(given), target);
    if (existsSync(tool)) return tool;
    return build(join(dirname(given), "..", ".."), target);
  }
  const src = join(cacheDir(), "llama.cpp");
  const tool = join(src, "build", "bin", target);
  if (existsSync(tool)) return tool;
  const bundle = join("node_modules", "node-llama-cpp", "llama", "gitRelease.bundle");
  if (!existsSync(bundle)) throw new Error(`no ${bundle}: run \`node scripts/ensure-llama.mjs\` first`);
  mkdirSync(cacheDir(), { recursive: true });
  if (!existsSync(src)) execFileSync("git", ["clone", "--quiet", bundle, src], { stdio: "inherit" });
  return build(src, target);
}

/** Builds `target` in the llama.cpp source tree `src` (configured once, static, for this machine). */
function build(src: string, target: string): string {
  process.stderr.write(`building ${target} from llama.cpp's source in ${src}\n`);
  const run = (args: string[]) => execFileSync("cmake", args, { cwd: src, stdio: "inherit" });
  if (!existsSync(join(src, "build", "CMakeCache.txt")))
    run(["-B", "build", "-DBUILD_SHARED_LIBS=OFF", "-DLLAMA_CURL=OFF", "-DGGML_NATIVE=ON"]);
  run(["--build", "build", "-j2", "--target", target]);
  return join(src, "build", "bin", target);
}

/** The path of a llama-quantize binary, building it first if there is none. */
export const llamaQuantize = (): string => llamaTool("llama-quantize");

/** `out`, llama-quantize's file for `preset` from the f32 file `input`, made once. */
export function quantizeWithLlama(input: string, out: string, preset: string): string {
  if (!existsSync(out)) {
    process.stderr.write(`llama-quantize ${preset} → ${out}\n`);
    execFileSync(llamaQuantize(), [input, out, preset, "2"], { stdio: ["ignore", "ignore", "pipe"] });
  }
  return out;
}
