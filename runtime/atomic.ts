// Outputs are never half-written: write beside the destination under a temporary name, then rename.
import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";

function tempName(path: string): string {
  return join(
    dirname(path),
    `.${basename(path)}.tmp-${process.pid}-${Math.random().toString(36).slice(2, 10)}`,
  );
}

export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  const tmp = tempName(path);
  try {
    writeFileSync(tmp, data);
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}

/**
 * Writes `files` (names without directories) as the directory `dir`: into a fresh temporary
 * directory first, then swapped into place, so a failure leaves the old output intact.
 */
export function writeDirAtomic(dir: string, files: Record<string, string | Uint8Array>): void {
  const target = resolve(dir);
  mkdirSync(dirname(target), { recursive: true });
  const tmp = tempName(target);
  const old = `${tmp}.old`;
  try {
    mkdirSync(tmp);
    for (const [name, data] of Object.entries(files)) {
      if (name !== basename(name) || name.startsWith("."))
        throw new Error(`refusing to write \`${name}\` outside ${dir}`);
      writeFileSync(join(tmp, name), data);
    }
    if (existsSync(target)) renameSync(target, old);
    renameSync(tmp, target);
    rmSync(old, { recursive: true, force: true });
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    if (existsSync(old) && !existsSync(target)) renameSync(old, target);
    throw e;
  }
}
