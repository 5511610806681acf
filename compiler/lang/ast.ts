// The typed AST of a .moe file: what the user wrote, with a source location on every node.

export interface Loc {
  file: string;
  line: number;
  col: number;
  offset: number;
  length: number;
}

export type BinaryOp = "+" | "-" | "*" | "/";

export type Expr =
  | { kind: "num"; value: number; text: string; loc: Loc }
  | { kind: "str"; value: string; loc: Loc }
  | { kind: "name"; name: string; loc: Loc }
  | { kind: "binary"; op: BinaryOp; left: Expr; right: Expr; loc: Loc }
  | { kind: "neg"; operand: Expr; loc: Loc }
  | { kind: "index"; target: Expr; index: Expr; loc: Loc }
  | { kind: "member"; target: Expr; name: string; loc: Loc }
  | { kind: "call"; callee: string; args: Arg[]; loc: Loc };

export interface Arg {
  /** Set for a named argument (`theta: 1e6`). */
  name?: string;
  value: Expr;
  loc: Loc;
}

export interface Named {
  name: string;
  loc: Loc;
}

export interface ParamDecl extends Named {
  value: Expr;
}

export interface WeightDecl extends Named {
  shape: Expr[];
  /** Checkpoint tensor name; `{i}` is replaced by the layer index. */
  tensor?: { value: string; loc: Loc };
}

/** `layer[i < layers] { ... }`: one copy of each weight per layer. */
export interface WeightGroup extends Named {
  index: string;
  count: Expr;
  weights: WeightDecl[];
}

export type Stmt =
  | { kind: "assign"; name: string; value: Expr; loc: Loc }
  | { kind: "for"; index: string; count: Expr; body: Stmt[]; loc: Loc }
  | { kind: "return"; value: Expr; loc: Loc };

export interface ForwardDecl {
  inputs: Named[];
  body: Stmt[];
  loc: Loc;
}

export interface ModelDecl extends Named {
  kind: "model";
  params: ParamDecl[];
  weights: WeightDecl[];
  groups: WeightGroup[];
  forward?: ForwardDecl;
}

/** A weight pattern: `layer[*].w_gate`, `*_norm`, `layer[3].wq`, `layer[0-3, 28-31].w_down`. */
export interface Pattern {
  text: string;
  /** `index`: every layer (`*`), or the layers listed (ranges expanded, in the order written). */
  segments: { glob: string; index?: "*" | number[] }[];
  loc: Loc;
}

export interface QuantRule {
  /** Empty for `default : scheme`. */
  patterns: Pattern[];
  scheme: Named;
  loc: Loc;
}

export interface QuantDecl extends Named {
  kind: "quantization";
  model: Named;
  rules: QuantRule[];
}

export type TargetValue =
  | { kind: "ident"; name: string }
  | { kind: "num"; value: number; unit?: string }
  | { kind: "str"; value: string };

export interface TargetProp {
  key: string;
  value: TargetValue;
  loc: Loc;
  valueLoc: Loc;
  /** Where the size unit of `24 GiB` is, when one is written. */
  unitLoc?: Loc;
}

export interface TargetDecl extends Named {
  kind: "target";
  props: TargetProp[];
}

export interface SpecFile {
  file: string;
  models: ModelDecl[];
  quants: QuantDecl[];
  targets: TargetDecl[];
}
