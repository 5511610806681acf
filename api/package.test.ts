// The package as an importer gets it: `npm pack` (which emits the types), the tarball unpacked into a
// fresh project's node_modules/moec as `npm install` would, then `import { loadModel } from "moec"` is
// type-checked by tsc and run by plain node. The tarball's dependencies are linked from this checkout's
// node_modules (what `npm install` would fetch), so the test needs no registry.
import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { afterAll, expect, it } from "vitest";

const root = resolve(".");
const dir = mkdtempSync(join(tmpdir(), "moec-consumer-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const CONSUMER = `import { type Completion, InvalidOptionError, loadModel } from "moec";

const model = await loadModel(process.argv[2]!, { threads: 1 });
const done: Completion = await model.complete("Once upon a time", { maxTokens: 8, temperature: 0 });
console.log(JSON.stringify({ text: done.text, finish: done.finishReason, context: model.info.contextLength }));
// @ts-expect-error maxTokens is a number
await model.complete("x", { maxTokens: "8" }).catch((e) => console.log(e instanceof InvalidOptionError));
await model.close();
`;

it("a fresh project installs the packed tarball and imports moec with types", () => {
  const packed = JSON.parse(
    execFileSync("npm", ["pack", "--json", "--pack-destination", dir], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
    }),
  ) as { filename: string; files: { path: string }[] }[];
  const files = packed[0]!.files.map((f) => f.path);
  expect(files).toContain("api/entry.js");
  expect(files).toContain("dist/api/index.d.ts");
  expect(files.some((f) => f.endsWith(".test.ts"))).toBe(false);

  const project = join(dir, "project");
  const pkg = join(project, "node_modules", "moec");
  mkdirSync(pkg, { recursive: true });
  execFileSync("tar", ["-xzf", join(dir, packed[0]!.filename), "-C", pkg, "--strip-components=1"]);
  const manifest = JSON.parse(readFileSync(join(pkg, "package.json"), "utf8")) as {
    dependencies: Record<string, string>;
  };
  for (const dep of [...Object.keys(manifest.dependencies), "@types/node"]) {
    mkdirSync(dirname(join(project, "node_modules", dep)), { recursive: true });
    symlinkSync(join(root, "node_modules", dep), join(project, "node_modules", dep));
  }
  writeFileSync(
    join(project, "package.json"),
    JSON.stringify({ name: "consumer", private: true, type: "module" }),
  );
  writeFileSync(
    join(project, "tsconfig.json"),
    JSON.stringify({
      compilerOptions: { target: "ES2022", module: "NodeNext", strict: true, outDir: "out", types: ["node"] },
      files: ["main.ts"],
    }),
  );
  writeFileSync(join(project, "main.ts"), CONSUMER);

  // The types: a strict compile of the importer, library declarations checked too (no skipLibCheck).
  const tsc = spawnSync(process.execPath, [join(root, "node_modules/typescript/bin/tsc"), "-p", project], {
    encoding: "utf8",
  });
  expect(tsc.status, tsc.stdout + tsc.stderr).toBe(0);
  // The JavaScript: plain node, no loader of the importer's own.
  const run = spawnSync(
    process.execPath,
    [join(project, "out/main.js"), join(root, "models/stories260K.gguf")],
    {
      encoding: "utf8",
      cwd: project,
      timeout: 60_000,
    },
  );
  expect(run.status, run.stderr).toBe(0);
  const [first, second] = run.stdout.trim().split("\n");
  expect(JSON.parse(first!)).toEqual({ text: ", there was a little girl", finish: "length", context: 2048 });
  expect(second).toBe("true");
}, 180_000);
