// node-llama-cpp (llama.cpp's prebuilt CPU build) is what tests and the bench compare against.
// It is installed here rather than listed in package.json: its optional per-platform packages for
// macOS and Windows cannot be resolved from this registry, so no lock file would satisfy `npm ci`.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";

const VERSION = "3.22.1";
try {
  // Read from disk: the package's "exports" do not include package.json, so require() cannot load it.
  const manifest = new URL("../node_modules/node-llama-cpp/package.json", import.meta.url);
  if (JSON.parse(readFileSync(manifest, "utf8")).version === VERSION) process.exit(0);
} catch {}
console.error(`installing node-llama-cpp@${VERSION} (not saved to package.json)`);
execFileSync("npm", ["install", "--no-save", "--no-audit", "--no-fund", `node-llama-cpp@${VERSION}`], {
  stdio: "inherit",
});
