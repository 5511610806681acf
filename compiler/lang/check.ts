// Semantic checks: a parsed spec becomes checked models (params evaluated, weights shaped,
// forward lowered to the graph IR), quantization rules resolved and targets validated.
// Errors are collected, not thrown one at a time, so a user sees them all at once.
import { isKvType, KV_TYPES, type KvType } from "../../runtime/kv-type.ts";
import { findScheme, schemeNames } from "../../runtime/quant/registry.ts";
import { bytesOf, sizeUnits } from "../../runtime/units.ts";
import { type Graph, walk } from "../ir/graph.ts";
import type { ModelDecl, Pattern, QuantDecl, SpecFile, TargetDecl, WeightDecl } from "./ast.ts";
import { Consequence, closest, didYouMean, SpecError } from "./errors.ts";
import { type GroupInfo, Lowering, type WeightInfo } from "./lower.ts";
import { evalDim, evalParams } from "./params.ts";

export interface CheckedModel {
  decl: ModelDecl;
  name: string;
  params: Map<string, number>;
  /** Top-level weights and group members, by key (`tok_embed`, `layer.wq`). */
  weights: Map<string, WeightInfo>;
  groups: Map<string, GroupInfo>;
  graph: Graph;
}

export interface CheckedQuant {
  decl: QuantDecl;
  name: string;
  model: string;
  /** Scheme per weight key and layer: `schemeFor("layer.wq", 3)`. */
  schemeFor(key: string, layer?: number): string;
  /** The scheme of the first explicit rule naming this weight, or undefined when `default` applies. */
  ruleFor?(key: string, layer?: number): string | undefined;
}

export const backends = ["cpu", "gpujs", "webgpu"] as const;
export type Backend = (typeof backends)[number];

export interface CheckedTarget {
  decl: TargetDecl;
  name: string;
  backend: Backend;
  memoryBytes: number;
  hostMemoryBytes?: number;
  maxContext: number;
  batch: number;
  /** `kv_type:`, the KV caches' element type; absent: the default (runtime/kv-type.ts). */
  kvType?: KvType;
}

export interface CheckedSpec {
  file: string;
  models: CheckedModel[];
  quants: CheckedQuant[];
  targets: CheckedTarget[];
}

/** Guards every place a spec's text could reach generated code (DESIGN: no injection). */
const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;

function checkWeight(w: WeightDecl, params: Map<string, number>, errors: SpecError[]): number[] | undefined {
  const shape: number[] = [];
  let elements = 1;
  for (const [i, d] of w.shape.entries()) {
    try {
      const v = evalDim(d, params, `dimension ${i} of \`${w.name}\``);
      elements *= v;
      shape.push(v);
    } catch (e) {
      if (!(e instanceof SpecError)) throw e;
      errors.push(e);
      return undefined;
    }
  }
  if (!Number.isSafeInteger(elements)) {
    errors.push(new SpecError(w.loc, `\`${w.name}\` has ${elements} elements, more than can be addressed`));
    return undefined;
  }
  if (shape.length > 4) {
    errors.push(
      new SpecError(w.loc, `\`${w.name}\` has ${shape.length} dimensions; at most 4 are supported`),
    );
    return undefined;
  }
  return shape;
}

export function checkModel(m: ModelDecl, errors: SpecError[]): CheckedModel | undefined {
  const before = errors.length;
  const params = evalParams(m, errors);
  const weights = new Map<string, WeightInfo>();
  const groups = new Map<string, GroupInfo>();
  const tensors = new Map<string, string>();
  const declare = (w: WeightDecl, group?: GroupInfo) => {
    const key = group ? `${group.name}.${w.name}` : w.name;
    if (weights.has(key) || (!group && groups.has(w.name))) {
      errors.push(new SpecError(w.loc, `weight \`${key}\` is declared twice`));
      return;
    }
    const shape = checkWeight(w, params, errors);
    if (!shape) return;
    let tensor = w.tensor?.value ?? (group ? `${group.name}.{${group.index}}.${w.name}` : w.name);
    if (group) {
      if (!tensor.includes(`{${group.index}}`)) {
        errors.push(
          new SpecError(
            w.tensor!.loc,
            `a per-layer tensor name must contain \`{${group.index}}\`, the layer index`,
          ),
        );
      }
      tensor = tensor.replaceAll(`{${group.index}}`, "\u0000");
    }
    const stray = /(?<!\\)\{([^}]*)\}/.exec(tensor);
    if (stray) {
      errors.push(
        new SpecError(
          w.tensor!.loc,
          `unknown placeholder \`{${stray[1]}}\` in a tensor name`,
          group ? `the layer index is \`{${group.index}}\`` : "only per-layer weights have an index",
        ),
      );
    }
    tensor = tensor.replaceAll("\u0000", `{${group?.index}}`).replace(/\\([{}])/g, "$1");
    const other = tensors.get(tensor);
    if (other)
      errors.push(
        new SpecError(w.tensor?.loc ?? w.loc, `tensor name "${tensor}" is already used by \`${other}\``),
      );
    tensors.set(tensor, key);
    const info: WeightInfo = { key, name: w.name, group: group?.name, shape, tensor, loc: w.loc };
    weights.set(key, info);
    group?.members.set(w.name, info);
  };
  for (const w of m.weights) declare(w);
  for (const g of m.groups) {
    if (groups.has(g.name) || weights.has(g.name)) {
      errors.push(new SpecError(g.loc, `\`${g.name}\` is declared twice`));
      continue;
    }
    let count: number;
    try {
      count = evalDim(g.count, params, `the number of \`${g.name}\` layers`);
    } catch (e) {
      if (!(e instanceof SpecError)) throw e;
      errors.push(e);
      continue;
    }
    const info: GroupInfo = { name: g.name, index: g.index, count, members: new Map() };
    groups.set(g.name, info);
    for (const w of g.weights) declare(w, info);
  }
  if (errors.length > before) return undefined;
  try {
    const graph = new Lowering(params, weights, groups).lower(m);
    for (const { node } of walk(graph))
      if (node.op === "moe") weights.get(node.weights.router!)!.router = true;
    return { decl: m, name: m.name, params, weights, groups, graph };
  } catch (e) {
    if (!(e instanceof SpecError)) throw e;
    errors.push(e);
    return undefined;
  }
}

function globToRegExp(glob: string): RegExp {
  return new RegExp(`^${glob.replace(/\*/g, "[A-Za-z0-9_]*")}$`);
}

/** Does a pattern name this weight in this layer? One segment matches a weight's own name anywhere. */
function matches(p: Pattern, w: WeightInfo, layer: number | undefined): boolean {
  const [a, b] = p.segments;
  if (p.segments.length === 1) return a!.index === undefined && globToRegExp(a!.glob).test(w.name);
  if (p.segments.length !== 2 || !w.group || b!.index !== undefined) return false;
  const layerOk =
    a!.index === undefined || a!.index === "*" || layer === undefined || a!.index.includes(layer);
  return layerOk && globToRegExp(a!.glob).test(w.group) && globToRegExp(b!.glob).test(w.name);
}

/** The layers a pattern lists (`layer[0-3]`), or undefined when it names every layer. */
function patternLayers(p: Pattern): number[] | undefined {
  const i = p.segments[0]!.index;
  return Array.isArray(i) ? i : undefined;
}

export function checkQuant(
  q: QuantDecl,
  models: Map<string, CheckedModel>,
  declared: Set<string>,
  errors: SpecError[],
): CheckedQuant | undefined {
  const m = models.get(q.model.name);
  if (!m && declared.has(q.model.name)) return undefined; // that model's own errors are already reported
  if (!m) {
    errors.push(
      new SpecError(
        q.model.loc,
        `quantization \`${q.name}\` is for an unknown model \`${q.model.name}\``,
        didYouMean(q.model.name, models.keys()),
      ),
    );
    return undefined;
  }
  let fallback: string | undefined;
  // Patterns of earlier rules over every layer: a weight they match never reaches a later rule.
  const earlier: Pattern[] = [];
  const weightNames = [...m.weights.values()].map((w) => (w.group ? `${w.group}[*].${w.name}` : w.name));
  for (const r of q.rules) {
    const s = findScheme(r.scheme.name);
    if (!s) {
      errors.push(
        new SpecError(
          r.scheme.loc,
          `unknown quantization scheme \`${r.scheme.name}\``,
          [didYouMean(r.scheme.name, schemeNames()), `known schemes: ${schemeNames().join(", ")}`]
            .filter(Boolean)
            .join(" "),
        ),
      );
      continue;
    }
    if (r.patterns.length === 0) {
      if (fallback) errors.push(new SpecError(r.loc, "`default` is given twice"));
      fallback = s.name;
      continue;
    }
    for (const p of r.patterns) {
      const listed = patternLayers(p);
      const hits = [...m.weights.values()].filter(
        (w) => listed?.some((l) => matches(p, w, l)) ?? matches(p, w, undefined),
      );
      const group = hits[0]?.group ? m.groups.get(hits[0].group) : undefined;
      const layer = group && listed?.find((l) => l >= group.count);
      if (hits.length === 0) {
        errors.push(
          new SpecError(
            p.loc,
            `pattern \`${p.text}\` matches no weight of \`${m.name}\``,
            didYouMean(
              p.segments.at(-1)!.glob,
              [...m.weights.values()].map((w) => w.name),
            ) ?? `weights: ${weightNames.join(", ")}`,
          ),
        );
      } else if (layer !== undefined && group) {
        errors.push(
          new SpecError(
            p.loc,
            `pattern \`${p.text}\` names layer ${layer}, but \`${group.name}\` has ${group.count}`,
          ),
        );
      }
      for (const w of hits) {
        const row = w.shape.at(-1)!;
        if (row % s.blockSize !== 0 && !earlier.some((e) => matches(e, w, undefined))) {
          errors.push(
            new SpecError(
              p.loc,
              `\`${w.key}\` has rows of ${row}, not a multiple of ${s.name}'s block of ${s.blockSize}`,
              "choose a scheme whose block divides the rows, or leave the weight to `default` (which falls back to f16)",
            ),
          );
        }
      }
    }
    earlier.push(...r.patterns.filter((p) => patternLayers(p) === undefined));
  }
  const rules = q.rules.filter((r) => r.patterns.length > 0);
  return {
    decl: q,
    name: q.name,
    model: m.name,
    schemeFor(key: string, layer?: number): string {
      const w = m.weights.get(key);
      if (!w) throw new Error(`no weight ${key}`);
      for (const r of rules)
        if (r.patterns.some((p) => matches(p, w, layer))) return r.scheme.name.toLowerCase();
      return defaultScheme(w, fallback ?? "f32");
    },
    ruleFor(key: string, layer?: number): string | undefined {
      const w = m.weights.get(key);
      if (!w) throw new Error(`no weight ${key}`);
      return rules.find((r) => r.patterns.some((p) => matches(p, w, layer)))?.scheme.name.toLowerCase();
    },
  };
}

/**
 * What `default` (or a uniform --quant) gives a weight: vectors (norms) and the router stay f32 as
 * in llama.cpp, and rows that do not fill the scheme's blocks fall back to f16.
 */
export function defaultScheme(w: Pick<WeightInfo, "shape" | "router">, scheme: string): string {
  if (w.shape.length < 2 || w.router) return "f32";
  const s = findScheme(scheme);
  return s && w.shape.at(-1)! % s.blockSize === 0 ? scheme : "f16";
}

const targetKeys = ["backend", "vram", "memory", "host_memory", "max_context", "batch", "kv_type"];

export function checkTarget(t: TargetDecl, errors: SpecError[]): CheckedTarget | undefined {
  const before = errors.length;
  const out: Partial<CheckedTarget> = { decl: t, name: t.name, batch: 1 };
  const seen = new Set<string>();
  for (const p of t.props) {
    if (seen.has(p.key)) errors.push(new SpecError(p.loc, `\`${p.key}\` is given twice`));
    seen.add(p.key);
    const v = p.value;
    const size = () => {
      if (v.kind !== "num") {
        errors.push(new SpecError(p.valueLoc, `\`${p.key}\` must be a size like \`24 GiB\``));
        return undefined;
      }
      const b = bytesOf(v.value, v.unit ?? "B");
      if (b === undefined)
        errors.push(
          new SpecError(
            p.unitLoc ?? p.valueLoc,
            `unknown size unit \`${v.unit}\``,
            didYouMean(v.unit!, sizeUnits) ?? `units: ${sizeUnits.join(", ")}`,
          ),
        );
      else if (b <= 0 || !Number.isSafeInteger(b))
        errors.push(new SpecError(p.valueLoc, `\`${p.key}\` must be a positive size`));
      return b;
    };
    const int = () => {
      if (
        v.kind !== "num" ||
        v.unit !== undefined ||
        !Number.isInteger(v.value) ||
        v.value <= 0 ||
        !Number.isSafeInteger(v.value)
      ) {
        errors.push(new SpecError(p.valueLoc, `\`${p.key}\` must be a positive integer`));
        return undefined;
      }
      return v.value;
    };
    switch (p.key) {
      case "backend": {
        const name = v.kind === "ident" || v.kind === "str" ? (v.kind === "ident" ? v.name : v.value) : "";
        if ((backends as readonly string[]).includes(name)) out.backend = name as Backend;
        else
          errors.push(
            new SpecError(
              p.valueLoc,
              `unknown backend \`${name}\``,
              didYouMean(name, backends) ?? `backends: ${backends.join(", ")}`,
            ),
          );
        break;
      }
      case "vram":
      case "memory":
        out.memoryBytes = size();
        break;
      case "host_memory":
        out.hostMemoryBytes = size();
        break;
      case "max_context":
        out.maxContext = int();
        break;
      case "batch":
        out.batch = int();
        break;
      case "kv_type": {
        const name = v.kind === "ident" ? v.name : v.kind === "str" ? v.value : "";
        if (isKvType(name)) out.kvType = name;
        else
          errors.push(
            new SpecError(
              p.valueLoc,
              `unknown KV cache type \`${name}\``,
              didYouMean(name, KV_TYPES) ?? `KV types: ${KV_TYPES.join(", ")}`,
            ),
          );
        break;
      }
      default:
        errors.push(
          new SpecError(
            p.loc,
            `unknown target property \`${p.key}\``,
            didYouMean(p.key, targetKeys) ?? `properties: ${targetKeys.join(", ")}`,
          ),
        );
    }
  }
  // A misspelled key (`memroy`) is reported once, as unknown, not again as missing.
  for (const p of t.props) {
    const near = targetKeys.includes(p.key) ? undefined : closest(p.key, targetKeys);
    if (near) seen.add(near);
  }
  for (const need of ["backend", "max_context"] as const) {
    if (!seen.has(need)) errors.push(new SpecError(t.loc, `target \`${t.name}\` needs \`${need}\``));
  }
  if (!seen.has("vram") && !seen.has("memory"))
    errors.push(new SpecError(t.loc, `target \`${t.name}\` needs \`vram\` (or \`memory\` for the CPU)`));
  return errors.length > before ? undefined : (out as CheckedTarget);
}

export function checkSpec(spec: SpecFile, errors: SpecError[]): CheckedSpec {
  const models = new Map<string, CheckedModel>();
  const names = new Map<string, SpecError["loc"]>();
  const unique = (n: { name: string; loc: SpecError["loc"] }, what: string) => {
    if (!IDENT.test(n.name)) errors.push(new SpecError(n.loc, `\`${n.name}\` is not a valid name`));
    const first = names.get(`${what}:${n.name}`);
    if (first) {
      errors.push(
        new SpecError(n.loc, `${what} \`${n.name}\` is declared twice (first at line ${first.line})`),
      );
    } else names.set(`${what}:${n.name}`, n.loc);
  };
  for (const m of spec.models) {
    unique(m, "model");
    const c = checkModel(m, errors);
    if (c) models.set(m.name, c);
  }
  const quants: CheckedQuant[] = [];
  for (const q of spec.quants) {
    unique(q, "quantization");
    const c = checkQuant(q, models, new Set(spec.models.map((m) => m.name)), errors);
    if (c) quants.push(c);
  }
  const targets: CheckedTarget[] = [];
  for (const t of spec.targets) {
    unique(t, "target");
    const c = checkTarget(t, errors);
    if (c) targets.push(c);
  }
  // Drop what only follows from an error already reported (uses of a param that failed).
  const shown = errors.filter((e) => !(e instanceof Consequence));
  errors.splice(0, errors.length, ...shown);
  return { file: spec.file, models: [...models.values()], quants, targets };
}
