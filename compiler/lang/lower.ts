// forward(...) → graph IR. Binds call arguments against the op table, infers shapes, and turns
// a `for` over layers into one loop node whose body is lowered once.
import type { Attr, Graph, Node } from "../ir/graph.ts";
import type { Arg, Expr, Loc, ModelDecl, Stmt } from "./ast.ts";
import { didYouMean, SpecError } from "./errors.ts";
import { type ArgSpec, type Bound, type OpSpec, ops, ShapeError } from "./ops.ts";
import { describe, type Env, evalDim, evalExpr } from "./params.ts";

export interface WeightInfo {
  /** `tok_embed`, or `layer.wq` for a member of a per-layer group. */
  key: string;
  name: string;
  group?: string;
  shape: number[];
  /** Checkpoint tensor name; for a group member `{index}` stands for the layer. */
  tensor: string;
  loc: Loc;
  /** Read by a moe router: kept f32 under `default`, as llama.cpp does. */
  router?: boolean;
}

export interface GroupInfo {
  name: string;
  index: string;
  count: number;
  members: Map<string, WeightInfo>;
}

type Val =
  | { k: "tensor"; id: number; shape: number[]; input?: boolean }
  | { k: "weight"; key: string; shape: number[] }
  | { k: "group"; group: GroupInfo }
  | { k: "layer"; group: GroupInfo }
  | { k: "scalar"; value: number }
  | { k: "word"; name: string }
  | { k: "str"; value: string };

interface Loop {
  index: string;
  count: number;
}

export class Lowering {
  private nextId = 0;
  /** Names first assigned inside the loop: gone after it. */
  private readonly loopOnly = new Set<string>();

  constructor(
    private readonly params: Env,
    private readonly weights: Map<string, WeightInfo>,
    private readonly groups: Map<string, GroupInfo>,
  ) {}

  lower(m: ModelDecl): Graph {
    const f = m.forward;
    if (!f) throw new SpecError(m.loc, `model \`${m.name}\` has no forward(...) block`);
    const scope = new Map<string, Val>();
    const g: Graph = { params: [], nodes: [], results: [] };
    for (const input of f.inputs) {
      if (scope.has(input.name))
        throw new SpecError(input.loc, `forward input \`${input.name}\` is declared twice`);
      const id = this.nextId++;
      g.params.push({ id, name: input.name, shape: [], dtype: "i32" });
      scope.set(input.name, { k: "tensor", id, shape: [], input: true });
    }
    const ret = this.block(f.body, scope, g, undefined);
    if (!ret) throw new SpecError(f.loc, "forward(...) must end with `return` of the logits");
    g.results.push(ret.id);
    return g;
  }

  /** Lowers statements into `g`; returns the value of a `return`, if any. */
  private block(body: Stmt[], scope: Map<string, Val>, g: Graph, loop: Loop | undefined) {
    for (const [i, s] of body.entries()) {
      if (s.kind === "assign") {
        if (this.params.has(s.name) || this.weights.has(s.name) || this.groups.has(s.name)) {
          throw new SpecError(s.loc, `\`${s.name}\` is a param or weight and cannot be assigned`);
        }
        const v = this.defined(this.expr(s.value, scope, g, loop), s.value, scope);
        if (v.k !== "tensor")
          throw new SpecError(
            s.value.loc,
            `expected a tensor on the right of \`${s.name} =\`, found ${this.kind(v)}`,
          );
        scope.set(s.name, v);
      } else if (s.kind === "for") {
        if (loop) throw new SpecError(s.loc, "loops cannot nest: a model has one loop over its layers");
        this.loop(s, scope, g);
      } else {
        if (loop) throw new SpecError(s.loc, "`return` must come after the layer loop, not inside it");
        if (i !== body.length - 1)
          throw new SpecError(body[i + 1]!.loc, "unreachable: statements after `return`");
        const v = this.defined(this.expr(s.value, scope, g, loop), s.value, scope);
        if (v.k !== "tensor" || v.input)
          throw new SpecError(s.value.loc, `\`return\` needs a tensor, found ${this.kind(v)}`);
        return v;
      }
    }
    return undefined;
  }

  private loop(s: Extract<Stmt, { kind: "for" }>, scope: Map<string, Val>, g: Graph): void {
    const count = evalDim(s.count, this.params, "the loop count");
    const assigned = new Set<string>();
    const collect = (b: Stmt[]) => b.forEach((st) => st.kind === "assign" && assigned.add(st.name));
    collect(s.body);
    // Values assigned in the body that exist before it are carried from one layer to the next.
    const carried = [...assigned].filter(
      (n) => scope.get(n)?.k === "tensor" && !(scope.get(n) as { input?: boolean }).input,
    );
    const body: Graph = { params: [], nodes: [], results: [] };
    const inner = new Map(scope);
    for (const name of carried) {
      const outer = scope.get(name) as Extract<Val, { k: "tensor" }>;
      const id = this.nextId++;
      body.params.push({ id, name, shape: outer.shape, dtype: "f32" });
      inner.set(name, { k: "tensor", id, shape: outer.shape });
    }
    this.block(s.body, inner, body, { index: s.index, count });
    for (const name of carried) {
      const before = scope.get(name) as Extract<Val, { k: "tensor" }>;
      const after = inner.get(name) as Extract<Val, { k: "tensor" }>;
      if (after.shape.join() !== before.shape.join()) {
        throw new SpecError(
          s.loc,
          `\`${name}\` changes shape in the loop ([${before.shape}] → [${after.shape}]); a layer must keep it`,
        );
      }
      body.results.push(after.id);
    }
    const loopNode = this.node(
      g,
      "loop",
      carried.map((n) => (scope.get(n) as { id: number }).id),
      [],
      s.loc,
    );
    loopNode.attrs = { count, index: s.index };
    loopNode.body = body;
    carried.forEach((name, k) => {
      const before = scope.get(name) as Extract<Val, { k: "tensor" }>;
      const r = this.node(g, "loop_result", [loopNode.id], before.shape, s.loc);
      r.attrs = { index: k };
      scope.set(name, { k: "tensor", id: r.id, shape: before.shape });
    });
    // Names first defined inside the loop do not exist after it.
    for (const name of assigned) {
      if (!carried.includes(name)) {
        scope.delete(name);
        this.loopOnly.add(name);
      }
    }
  }

  private node(g: Graph, op: string, inputs: number[], shape: number[], loc: Loc): Node {
    const n: Node = { id: this.nextId++, op, inputs, weights: {}, attrs: {}, shape, dtype: "f32", loc };
    g.nodes.push(n);
    return n;
  }

  private kind(v: Val): string {
    switch (v.k) {
      case "tensor":
        return v.input ? "the token input" : `a tensor [${v.shape}]`;
      case "weight":
        return `the weight \`${v.key}\``;
      case "group":
        return `the layer group \`${v.group.name}\` (index it: \`${v.group.name}[${v.group.index}]\`)`;
      case "layer":
        return `a layer of \`${v.group.name}\` (pick a weight: \`.name\`)`;
      case "scalar":
        return `the number ${v.value}`;
      case "word":
        return `\`${v.name}\``;
      case "str":
        return "a string";
    }
  }

  private expr(e: Expr, scope: Map<string, Val>, g: Graph, loop: Loop | undefined): Val {
    switch (e.kind) {
      case "num":
        return { k: "scalar", value: e.value };
      case "str":
        return { k: "str", value: e.value };
      case "name": {
        const v = scope.get(e.name);
        if (v) return v;
        const p = this.params.get(e.name);
        if (p !== undefined) return { k: "scalar", value: p };
        const w = this.weights.get(e.name);
        if (w) return { k: "weight", key: w.key, shape: w.shape };
        const grp = this.groups.get(e.name);
        if (grp) return { k: "group", group: grp };
        return { k: "word", name: e.name };
      }
      case "neg":
      case "binary": {
        if (e.kind === "binary") {
          const a = this.expr(e.left, scope, g, loop);
          const b = this.expr(e.right, scope, g, loop);
          if (a.k === "tensor" && b.k === "tensor" && (e.op === "+" || e.op === "*")) {
            return this.call(e.op === "+" ? ops.add! : ops.mul!, [], e.loc, g, {
              a: [a, e.left],
              b: [b, e.right],
            });
          }
          // A tensor times a number is a constant multiplier: `scale`.
          if (e.op === "*" && (a.k === "tensor") !== (b.k === "tensor")) {
            const [t, te, c, ce] = a.k === "tensor" ? [a, e.left, b, e.right] : [b, e.right, a, e.left];
            if (c.k === "scalar" && !(t as { input?: boolean }).input)
              return this.call(ops.scale!, [], e.loc, g, { x: [t, te], by: [c, ce] });
          }
          if (a.k === "tensor" || b.k === "tensor") {
            throw new SpecError(
              e.loc,
              `\`${e.op}\` on tensors: only \`+\` (add) and \`*\` (mul) of two tensors, and a tensor \`*\` a number, are defined`,
            );
          }
        }
        this.mustBeScalar(e, scope, g, loop);
        return { k: "scalar", value: evalExpr(e, this.scalarEnv(scope)) };
      }
      case "index": {
        const t = this.expr(e.target, scope, g, loop);
        if (t.k !== "group")
          throw new SpecError(e.loc, `only a layer group can be indexed, not ${this.kind(t)}`);
        const idx = e.index;
        if (!loop) {
          throw new SpecError(
            e.loc,
            `\`${t.group.name}[...]\` is used outside the layer loop; expected it inside \`for ${t.group.index} < ...\``,
          );
        }
        if (idx.kind !== "name" || idx.name !== loop.index) {
          const found =
            idx.kind === "name" ? `\`${idx.name}\`` : idx.kind === "num" ? idx.text : describe(idx);
          throw new SpecError(
            idx.loc,
            `expected the loop variable \`${loop.index}\` as the index of \`${t.group.name}\`, found ${found}`,
          );
        }
        if (t.group.count !== loop.count) {
          const times = loop.count === 1 ? "once" : `${loop.count} times`;
          throw new SpecError(
            e.loc,
            `\`${t.group.name}\` has ${t.group.count} layers but the loop runs ${times}`,
          );
        }
        return { k: "layer", group: t.group };
      }
      case "member": {
        const t = this.expr(e.target, scope, g, loop);
        if (t.k !== "layer")
          throw new SpecError(e.loc, `\`.${e.name}\` needs a layer (\`group[i]\`), not ${this.kind(t)}`);
        const w = t.group.members.get(e.name);
        if (!w) {
          throw new SpecError(
            e.loc,
            `\`${t.group.name}\` has no weight \`${e.name}\``,
            didYouMean(e.name, t.group.members.keys()),
          );
        }
        return { k: "weight", key: w.key, shape: w.shape };
      }
      case "call": {
        const op = ops[e.callee];
        if (!op) {
          throw new SpecError(
            e.loc,
            `unknown op \`${e.callee}\``,
            didYouMean(e.callee, Object.keys(ops)) ?? `built-in ops: ${Object.keys(ops).join(", ")}`,
          );
        }
        return this.call(op, e.args, e.loc, g, undefined, scope, loop);
      }
    }
  }

  private scalarEnv(scope: Map<string, Val>): Env {
    const env = new Map(this.params);
    for (const [k, v] of scope) if (v.k === "scalar") env.set(k, v.value);
    return env;
  }

  /** Params are the only names allowed in scalar arithmetic. */
  private mustBeScalar(e: Expr, scope: Map<string, Val>, g: Graph, loop: Loop | undefined): void {
    if (e.kind === "name") {
      const v = this.expr(e, scope, g, loop);
      if (v.k === "word")
        throw new SpecError(e.loc, `undefined name \`${e.name}\``, this.hintFor(e.name, scope));
      if (v.k !== "scalar") throw new SpecError(e.loc, `expected a number, found ${this.kind(v)}`);
    } else if (e.kind === "binary") {
      this.mustBeScalar(e.left, scope, g, loop);
      this.mustBeScalar(e.right, scope, g, loop);
    } else if (e.kind === "neg") this.mustBeScalar(e.operand, scope, g, loop);
    else if (e.kind !== "num") throw new SpecError(e.loc, `expected a number, found ${describe(e)}`);
  }

  /** A name that resolved to nothing, where a value is needed, is an undefined name. */
  private defined(v: Val, e: Expr, scope: Map<string, Val>): Val {
    if (v.k === "word" && e.kind === "name") {
      throw new SpecError(e.loc, `undefined name \`${v.name}\``, this.hintFor(v.name, scope));
    }
    return v;
  }

  private hintFor(name: string, scope: Map<string, Val>): string | undefined {
    if (this.loopOnly.has(name))
      return `\`${name}\` is first assigned inside the loop, so it does not exist after it`;
    return didYouMean(name, [
      ...scope.keys(),
      ...this.params.keys(),
      ...this.weights.keys(),
      ...this.groups.keys(),
    ]);
  }

  /** Matches positional and named arguments to the op's signature. */
  private bind(op: OpSpec, params: readonly ArgSpec[], args: Arg[], loc: Loc): Map<string, Arg> {
    const bound = new Map<string, Arg>();
    let pos = 0;
    for (const a of args) {
      let spec: ArgSpec | undefined;
      if (a.name === undefined) {
        if ([...bound.keys()].some((k) => args.find((x) => x.name === k))) {
          throw new SpecError(a.loc, `positional argument after a named one in \`${op.name}\``);
        }
        spec = params[pos++];
        if (!spec) {
          const names = params.map((p) => p.name).join(", ");
          throw new SpecError(
            a.loc,
            `\`${op.name}\` takes ${params.length} argument${params.length === 1 ? "" : "s"} (${names}), found ${args.length}`,
          );
        }
      } else {
        spec = params.find((p) => p.name === a.name);
        if (!spec) {
          throw new SpecError(
            a.loc,
            `unknown argument \`${a.name}\` for \`${op.name}\``,
            didYouMean(
              a.name,
              params.map((p) => p.name),
            ) ?? `\`${op.name}\` takes: ${params.map((p) => p.name).join(", ")}`,
          );
        }
      }
      if (bound.has(spec.name))
        throw new SpecError(a.loc, `argument \`${spec.name}\` of \`${op.name}\` is given twice`);
      bound.set(spec.name, a);
    }
    for (const p of params) {
      if (!bound.has(p.name) && p.default === undefined && !p.optional) {
        throw new SpecError(loc, `\`${op.name}\` is missing its argument \`${p.name}\` (${p.doc})`);
      }
    }
    return bound;
  }

  private call(
    op: OpSpec,
    args: Arg[],
    loc: Loc,
    g: Graph,
    pre?: Record<string, [Val, Expr]>,
    scope?: Map<string, Val>,
    loop?: Loop,
  ): Val {
    const b: Bound = { shapes: {}, attrs: {} };
    const inputs: number[] = [];
    const weights: Record<string, string> = {};
    let expert: Node["expert"];
    const bound = pre ? new Map<string, Arg>() : this.bind(op, op.args, args, loc);
    const argLocs: Record<string, Loc> = {};
    for (const spec of op.args) {
      const arg = bound.get(spec.name);
      const given = pre?.[spec.name];
      if (!arg && !given) {
        if (spec.default !== undefined) b.attrs[spec.name] = spec.default;
        continue;
      }
      const expr = given ? given[1] : arg!.value;
      argLocs[spec.name] = expr.loc;
      if (spec.kind === "expert") {
        expert = this.expertBody(expr, scope!, g, loop, b, argLocs);
        continue;
      }
      const v = given ? given[0] : this.expr(expr, scope!, g, loop);
      const bad = (what: string) =>
        new SpecError(
          expr.loc,
          `argument \`${spec.name}\` of \`${op.name}\` must be ${what}, found ${this.kind(v)}`,
        );
      switch (spec.kind) {
        case "tensor":
        case "tokens":
          if (v.k === "word")
            throw new SpecError(expr.loc, `undefined name \`${v.name}\``, this.hintFor(v.name, scope!));
          if (v.k !== "tensor" || (spec.kind === "tokens") !== !!v.input)
            throw bad(spec.kind === "tokens" ? "the token input" : "a tensor");
          b.shapes[spec.name] = v.shape;
          inputs.push(v.id);
          break;
        case "weight":
          if (v.k === "word")
            throw new SpecError(expr.loc, `undefined name \`${v.name}\``, this.hintFor(v.name, scope!));
          if (v.k !== "weight") throw bad("a weight");
          b.shapes[spec.name] = v.shape;
          weights[spec.name] = v.key;
          break;
        case "int":
        case "float": {
          if (v.k === "word")
            throw new SpecError(expr.loc, `undefined name \`${v.name}\``, this.hintFor(v.name, scope!));
          if (v.k !== "scalar") throw bad("a number");
          if (spec.kind === "int" && !Number.isInteger(v.value)) throw bad("an integer");
          b.attrs[spec.name] = v.value;
          break;
        }
        case "bool":
          if (v.k !== "word" || (v.name !== "true" && v.name !== "false")) throw bad("`true` or `false`");
          b.attrs[spec.name] = v.name === "true";
          break;
        case "enum": {
          const word = v.k === "word" ? v.name : v.k === "str" ? v.value : undefined;
          if (word === undefined || !spec.values!.includes(word)) {
            throw new SpecError(
              expr.loc,
              `argument \`${spec.name}\` of \`${op.name}\` must be one of ${spec.values!.join(", ")}, found ${this.kind(v)}`,
            );
          }
          b.attrs[spec.name] = word;
          break;
        }
      }
    }
    let shape: number[];
    try {
      shape = op.infer(b);
    } catch (e) {
      if (e instanceof ShapeError)
        throw new SpecError((e.arg && argLocs[e.arg]) || loc, `${op.name}: ${e.message}`);
      throw e;
    }
    const n = this.node(g, op.name, inputs, shape, loc);
    n.weights = weights;
    n.attrs = b.attrs as Record<string, Attr>;
    if (expert) n.expert = expert;
    return { k: "tensor", id: n.id, shape };
  }

  /** `expert: swiglu(w_gate, w_up, w_down)`: an op written without its input, over per-expert weights. */
  private expertBody(
    e: Expr,
    scope: Map<string, Val>,
    g: Graph,
    loop: Loop | undefined,
    b: Bound,
    argLocs: Record<string, Loc>,
  ): Node["expert"] {
    const body = e.kind === "call" ? ops[e.callee] : undefined;
    if (e.kind !== "call" || !body?.expertWeights) {
      const can = Object.values(ops)
        .filter((o) => o.expertWeights)
        .map((o) => o.name);
      throw new SpecError(e.loc, `an expert body must be a call of ${can.join(" or ")}`);
    }
    const params = body.args.filter((a) => body.expertWeights!.includes(a.name));
    const bound = this.bind(body, params, e.args, e.loc);
    const weights: Record<string, string> = {};
    const shapes: Record<string, number[]> = {};
    for (const [name, arg] of bound) {
      const v = this.expr(arg.value, scope, g, loop);
      if (v.k !== "weight")
        throw new SpecError(
          arg.value.loc,
          `expert argument \`${name}\` must be a weight, found ${this.kind(v)}`,
        );
      weights[name] = v.key;
      shapes[name] = v.shape;
      argLocs[name] = arg.value.loc;
    }
    b.expert = { op: body.name, shapes };
    return { op: body.name, weights };
  }
}
