// The .moe grammar as a Chevrotain CST parser. One instance, reused: Chevrotain's grammar
// recording is expensive and the instance is stateless between `parse` calls.
import { CstParser, type IParserErrorMessageProvider, type IToken, type TokenType } from "chevrotain";
import * as T from "./lexer.ts";

function shown(tok: IToken): string {
  return tok.tokenType.name === "EOF" ? "end of file" : `'${tok.image}'`;
}

function label(t: TokenType): string {
  if (t.LABEL) return t.LABEL;
  if (t.name === "EOF") return "end of file";
  if (t.name === "Identifier") return "a name";
  if (t.name === "Number") return "a number";
  if (t.name === "String") return "a string";
  return `'${t.name.toLowerCase()}'`;
}

function alternatives(paths: TokenType[][][]): string {
  const firsts = new Set<string>();
  for (const alt of paths) for (const path of alt) if (path[0]) firsts.add(label(path[0]));
  const list = [...firsts];
  return list.length <= 1
    ? (list[0] ?? "something else")
    : `${list.slice(0, -1).join(", ")} or ${list.at(-1)}`;
}

/** Each rule as a person would name the place: "expected ':' in a weight declaration". */
const places: Record<string, string> = {
  spec: "the file",
  modelDecl: "a model",
  paramDecl: "a param declaration",
  paramAssign: "a param declaration",
  weightsDecl: "the weights block",
  weightGroup: "a layer group",
  weightDecl: "a weight declaration",
  forwardDecl: "forward(...)",
  block: "a block",
  statement: "a statement",
  forStmt: "a for loop",
  returnStmt: "a return",
  assignStmt: "an assignment",
  call: "a call",
  argument: "an argument",
  quantDecl: "a quantization block",
  quantRule: "a quantization rule",
  pattern: "a pattern",
  patternSegment: "a pattern",
  targetDecl: "a target",
  targetProp: "a target property",
};

function place(ruleName: string): string {
  return places[ruleName] ?? "an expression";
}

/**
 * Where a closing token was expected, what else could have stood there: a loop over
 * declarations ended at something that is none of them.
 */
const orClose: Record<string, string> = {
  "spec:EOF": "'model', 'quantization' or 'target'",
  "modelDecl:RCurly": "'param', 'weights', 'forward' or '}'",
  "weightsDecl:RCurly": "a weight (`name : [dims]`), a layer group (`name[i < count] {`) or '}'",
  "weightGroup:RCurly": "a weight (`name : [dims]`) or '}'",
  "block:RCurly": "a statement or '}'",
  "quantDecl:RCurly": "a rule (`pattern : scheme`), `default : scheme` or '}'",
  "targetDecl:RCurly": "a property (`key: value`) or '}'",
  "call:RParen": "',' or ')'",
  "forwardDecl:RParen": "',' or ')'",
  "weightDecl:RBracket": "',' or ']'",
  "atom:RParen": "an operator or ')'",
  "postfix:RBracket": "an operator or ']'",
  "weightGroup:RBracket": "an operator or ']'",
};

const messages: IParserErrorMessageProvider = {
  buildMismatchTokenMessage: ({ expected, actual, ruleName }) => {
    const alt = orClose[`${ruleName}:${expected.name}`];
    if (ruleName === "spec") return `expected ${alt ?? label(expected)}, found ${shown(actual)}`;
    return `expected ${alt ?? label(expected)} in ${place(ruleName)}, found ${shown(actual)}`;
  },
  buildNotAllInputParsedMessage: ({ firstRedundant }) =>
    `expected 'model', 'quantization' or 'target', found ${shown(firstRedundant)}`,
  buildNoViableAltMessage: ({ expectedPathsPerAlt, actual, ruleName }) =>
    `expected ${alternatives(expectedPathsPerAlt)} in ${place(ruleName)}, found ${shown(actual[0]!)}`,
  buildEarlyExitMessage: ({ expectedIterationPaths, actual, ruleName }) =>
    `expected ${alternatives([expectedIterationPaths])} in ${place(ruleName)}, found ${shown(actual[0]!)}`,
};

class MoeParser extends CstParser {
  constructor() {
    super(T.allTokens, { recoveryEnabled: true, maxLookahead: 3, errorMessageProvider: messages });
    this.performSelfAnalysis();
  }

  spec = this.RULE("spec", () => {
    this.MANY(() => {
      this.OR([
        { ALT: () => this.SUBRULE(this.modelDecl) },
        { ALT: () => this.SUBRULE(this.quantDecl) },
        { ALT: () => this.SUBRULE(this.targetDecl) },
      ]);
    });
  });

  modelDecl = this.RULE("modelDecl", () => {
    this.CONSUME(T.Model);
    this.CONSUME(T.Identifier);
    this.CONSUME(T.LCurly);
    this.MANY(() => {
      this.OR([
        { ALT: () => this.SUBRULE(this.paramDecl) },
        { ALT: () => this.SUBRULE(this.weightsDecl) },
        { ALT: () => this.SUBRULE(this.forwardDecl) },
      ]);
    });
    this.CONSUME(T.RCurly);
  });

  paramDecl = this.RULE("paramDecl", () => {
    this.CONSUME(T.Param);
    this.AT_LEAST_ONE_SEP({ SEP: T.Comma, DEF: () => this.SUBRULE(this.paramAssign) });
  });

  paramAssign = this.RULE("paramAssign", () => {
    this.CONSUME(T.Identifier);
    this.CONSUME(T.Equals);
    this.SUBRULE(this.expression);
  });

  weightsDecl = this.RULE("weightsDecl", () => {
    this.CONSUME(T.Weights);
    this.CONSUME(T.LCurly);
    this.MANY(() => {
      this.OR([
        { GATE: () => this.LA(2).tokenType === T.LBracket, ALT: () => this.SUBRULE(this.weightGroup) },
        { ALT: () => this.SUBRULE(this.weightDecl) },
      ]);
    });
    this.CONSUME(T.RCurly);
  });

  weightGroup = this.RULE("weightGroup", () => {
    this.CONSUME(T.Identifier);
    this.CONSUME(T.LBracket);
    this.CONSUME2(T.Identifier);
    this.CONSUME(T.Less);
    this.SUBRULE(this.expression);
    this.CONSUME(T.RBracket);
    this.CONSUME(T.LCurly);
    this.MANY(() => this.SUBRULE(this.weightDecl));
    this.CONSUME(T.RCurly);
  });

  weightDecl = this.RULE("weightDecl", () => {
    this.CONSUME(T.Identifier);
    this.CONSUME(T.Colon);
    this.CONSUME(T.LBracket);
    this.AT_LEAST_ONE_SEP({ SEP: T.Comma, DEF: () => this.SUBRULE(this.expression) });
    this.CONSUME(T.RBracket);
    this.OPTION(() => {
      this.CONSUME(T.Arrow);
      this.CONSUME(T.StringLit);
    });
  });

  forwardDecl = this.RULE("forwardDecl", () => {
    this.CONSUME(T.Forward);
    this.CONSUME(T.LParen);
    this.MANY_SEP({ SEP: T.Comma, DEF: () => this.CONSUME(T.Identifier) });
    this.CONSUME(T.RParen);
    this.SUBRULE(this.block);
  });

  block = this.RULE("block", () => {
    this.CONSUME(T.LCurly);
    this.MANY(() => this.SUBRULE(this.statement));
    this.CONSUME(T.RCurly);
  });

  statement = this.RULE("statement", () => {
    this.OR([
      { ALT: () => this.SUBRULE(this.forStmt) },
      { ALT: () => this.SUBRULE(this.returnStmt) },
      { ALT: () => this.SUBRULE(this.assignStmt) },
    ]);
  });

  forStmt = this.RULE("forStmt", () => {
    this.CONSUME(T.For);
    this.CONSUME(T.Identifier);
    this.CONSUME(T.Less);
    this.SUBRULE(this.expression);
    this.SUBRULE(this.block);
  });

  returnStmt = this.RULE("returnStmt", () => {
    this.CONSUME(T.Return);
    this.SUBRULE(this.expression);
  });

  assignStmt = this.RULE("assignStmt", () => {
    this.CONSUME(T.Identifier);
    this.CONSUME(T.Equals);
    this.SUBRULE(this.expression);
  });

  expression = this.RULE("expression", () => {
    this.SUBRULE(this.term);
    this.MANY(() => {
      this.OR([{ ALT: () => this.CONSUME(T.Plus) }, { ALT: () => this.CONSUME(T.Minus) }]);
      this.SUBRULE2(this.term);
    });
  });

  term = this.RULE("term", () => {
    this.SUBRULE(this.unary);
    this.MANY(() => {
      this.OR([{ ALT: () => this.CONSUME(T.Star) }, { ALT: () => this.CONSUME(T.Slash) }]);
      this.SUBRULE2(this.unary);
    });
  });

  unary = this.RULE("unary", () => {
    this.OR([
      {
        ALT: () => {
          this.CONSUME(T.Minus);
          this.SUBRULE(this.unary);
        },
      },
      { ALT: () => this.SUBRULE(this.postfix) },
    ]);
  });

  postfix = this.RULE("postfix", () => {
    this.SUBRULE(this.atom);
    this.MANY(() => {
      this.OR([
        {
          ALT: () => {
            this.CONSUME(T.Dot);
            this.CONSUME(T.Identifier);
          },
        },
        {
          ALT: () => {
            this.CONSUME(T.LBracket);
            this.SUBRULE(this.expression);
            this.CONSUME(T.RBracket);
          },
        },
      ]);
    });
  });

  atom = this.RULE("atom", () => {
    this.OR([
      { ALT: () => this.CONSUME(T.NumberLit) },
      { ALT: () => this.CONSUME(T.StringLit) },
      { ALT: () => this.SUBRULE(this.call) },
      {
        ALT: () => {
          this.CONSUME(T.LParen);
          this.SUBRULE(this.expression);
          this.CONSUME(T.RParen);
        },
      },
    ]);
  });

  /** A name, or a call when followed by `(`. */
  call = this.RULE("call", () => {
    this.CONSUME(T.Identifier);
    this.OPTION(() => {
      this.CONSUME(T.LParen);
      this.MANY_SEP({ SEP: T.Comma, DEF: () => this.SUBRULE(this.argument) });
      this.CONSUME(T.RParen);
    });
  });

  argument = this.RULE("argument", () => {
    this.OPTION({
      GATE: () => this.LA(2).tokenType === T.Colon,
      DEF: () => {
        this.CONSUME(T.Identifier);
        this.CONSUME(T.Colon);
      },
    });
    this.SUBRULE(this.expression);
  });

  quantDecl = this.RULE("quantDecl", () => {
    this.CONSUME(T.Quantization);
    this.CONSUME(T.Identifier);
    this.CONSUME(T.For);
    this.CONSUME2(T.Identifier);
    this.CONSUME(T.LCurly);
    this.MANY(() => this.SUBRULE(this.quantRule));
    this.CONSUME(T.RCurly);
  });

  quantRule = this.RULE("quantRule", () => {
    this.OR([
      { ALT: () => this.CONSUME(T.Default) },
      { ALT: () => this.AT_LEAST_ONE_SEP({ SEP: T.Comma, DEF: () => this.SUBRULE(this.pattern) }) },
    ]);
    this.CONSUME(T.Colon);
    this.CONSUME(T.Identifier);
  });

  /** Segments separated by dots; a segment is adjacent names and `*`s (`w_*`), maybe indexed. */
  pattern = this.RULE("pattern", () => {
    this.AT_LEAST_ONE_SEP({ SEP: T.Dot, DEF: () => this.SUBRULE(this.patternSegment) });
  });

  patternSegment = this.RULE("patternSegment", () => {
    this.AT_LEAST_ONE(() => {
      this.OR([{ ALT: () => this.CONSUME(T.Identifier) }, { ALT: () => this.CONSUME(T.Star) }]);
    });
    // `[*]`, or layers and inclusive ranges: `[0]`, `[0-3, 28-31]`.
    this.OPTION(() => {
      this.CONSUME(T.LBracket);
      this.OR2([
        { ALT: () => this.CONSUME2(T.Star) },
        {
          ALT: () =>
            this.AT_LEAST_ONE_SEP2({
              SEP: T.Comma,
              DEF: () => {
                this.CONSUME(T.NumberLit);
                this.OPTION2(() => {
                  this.CONSUME(T.Minus);
                  this.CONSUME2(T.NumberLit);
                });
              },
            }),
        },
      ]);
      this.CONSUME(T.RBracket);
    });
  });

  targetDecl = this.RULE("targetDecl", () => {
    this.CONSUME(T.Target);
    this.CONSUME(T.Identifier);
    this.CONSUME(T.LCurly);
    this.MANY(() => {
      this.SUBRULE(this.targetProp);
      this.OPTION(() => this.CONSUME(T.Comma));
    });
    this.CONSUME(T.RCurly);
  });

  targetProp = this.RULE("targetProp", () => {
    this.CONSUME(T.Identifier);
    this.CONSUME(T.Colon);
    this.OR([
      {
        ALT: () => {
          this.CONSUME(T.NumberLit);
          // A unit (`24 GiB`), unless that name starts the next property.
          this.OPTION2({
            GATE: () => this.LA(2).tokenType !== T.Colon,
            DEF: () => this.CONSUME2(T.Identifier),
          });
        },
      },
      { ALT: () => this.CONSUME3(T.Identifier) },
      { ALT: () => this.CONSUME(T.StringLit) },
    ]);
  });
}

export const parser = new MoeParser();
