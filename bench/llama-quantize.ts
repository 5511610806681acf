// llama.cpp's own quantizer, for the bench's preset files: MOEC_LLAMA_QUANTIZE if set, else a copy built once
// under the cache directory from the llama.cpp source node-llama-cpp ships (git, cmake and a C++ compiler;
// about ten minutes on two cores the first time).
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";

export function cacheDir(): string {
  return join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "moec");
}

/** The path of a llama-quantize binary, building it first if there is none. */
export function llamaQuantize(): string {
  const given = process.env.MOEC_LLAMA_QUANTIZE;
  if (given) {
    if (!existsSync(given)) throw new Error(`MOEC_LLAMA_QUANTIZE=${given}: no such file`);
    return given;
  }
  const src = join(cacheDir(), "llama.cpp");
  const tool = join(src, "build", "bin", "llama-quantize");
  if (existsSync(tool)) return tool;
  const bundle = join("node_modules", "node-llama-cpp", "llama", "gitRelease.bundle");
  if (!existsSync(bundle)) throw new Error(`no ${bundle}: run \`node scripts/ensure-llama.mjs\` first`);
  process.stderr.write(`building llama-quantize from node-llama-cpp's llama.cpp source in ${src}\n`);
  mkdirSync(cacheDir(), { recursive: true });
  const run = (cmd: string, args: string[], cwd?: string) =>
    execFileSync(cmd, args, { cwd, stdio: "inherit" });
  if (!existsSync(src)) run("git", ["clone", "--quiet", bundle, src]);
  run("cmake", ["-B", "build", "-DBUILD_SHARED_LIBS=OFF", "-DLLAMA_CURL=OFF", "-DGGML_NATIVE=ON"], src);
  run("cmake", ["--build", "build", "-j2", "--target", "llama-quantize"], src);
  return tool;
}

/** `out`, llama-quantize's file for `preset` from the f32 file `input`, made once. */
export function quantizeWithLlama(input: string, out: string, preset: string): string {
  if (!existsSync(out)) {
    process.stderr.write(`llama-quantize ${preset} → ${out}\n`);
    execFileSync(llamaQuantize(), [input, out, preset, "2"], { stdio: ["ignore", "ignore", "pipe"] });
  }
  return out;
}
