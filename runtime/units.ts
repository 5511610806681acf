// Byte sizes as people write them: `24 GiB`, `80GB`, `512MiB`, or a plain number of bytes.

const UNITS: Record<string, number> = {
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  kib: 2 ** 10,
  mib: 2 ** 20,
  gib: 2 ** 30,
  tib: 2 ** 40,
};

export const sizeUnits = ["B", "KB", "MB", "GB", "TB", "KiB", "MiB", "GiB", "TiB"];

/** Bytes for `value unit`, or undefined when the unit is unknown. */
export function bytesOf(value: number, unit = "B"): number | undefined {
  const scale = UNITS[unit.toLowerCase()];
  return scale === undefined ? undefined : Math.round(value * scale);
}

/** Parses `24GiB`, `24 GiB`, `1.5e9`; undefined when it is not a size. */
export function parseSize(text: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?(?:e\d+)?)\s*([A-Za-z]*)\s*$/.exec(text);
  if (!m) return undefined;
  const bytes = bytesOf(Number(m[1]), m[2] || "B");
  return bytes !== undefined && Number.isSafeInteger(bytes) ? bytes : undefined;
}

export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = n;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(2)} ${units[i]}`;
}
