// node-llama-cpp (llama.cpp's prebuilt CPU build) is what tests and the bench compare against.
// It is installed here rather than listed in package.json: its optional per-platform packages for
// macOS and Windows cannot be resolved from this registry, so no lock file would satisfy `npm ci`.
import { execFileSync } from "node:child_process";
import { createRequire } from "node:module";

const VERSION = "3.22.1";
const require = createRequire(import.meta.url);
try {
  const installed = require("node-llama-cpp/package.json").version;
  if (installed === VERSION) process.exit(0);
} catch {}
console.error(`installing node-llama-cpp@${VERSION} (not saved to package.json)`);
execFileSync("npm", ["install", "--no-save", "--no-audit", "--no-fund", `node-llama-cpp@${VERSION}`], {
  stdio: "inherit",
});
