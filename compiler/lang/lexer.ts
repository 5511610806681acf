// Tokens of the .moe language. Keywords are matched as identifiers first (longer_alt), so
// `model_dim` is an identifier, not `model` followed by `_dim`.
import { createToken, Lexer, type TokenType } from "chevrotain";

export const Identifier = createToken({ name: "Identifier", pattern: /[A-Za-z_][A-Za-z0-9_]*/ });

function keyword(word: string): TokenType {
  return createToken({ name: word[0]!.toUpperCase() + word.slice(1), pattern: word, longer_alt: Identifier });
}

export const Model = keyword("model");
export const Param = keyword("param");
export const Weights = keyword("weights");
export const Forward = keyword("forward");
export const For = keyword("for");
export const Return = keyword("return");
export const Quantization = keyword("quantization");
export const Target = keyword("target");
export const Default = keyword("default");

/** The reserved words, as written. */
export const KEYWORDS: readonly string[] = [
  Model,
  Param,
  Weights,
  Forward,
  For,
  Return,
  Quantization,
  Target,
  Default,
].map((t) => t.PATTERN as string);

export const NumberLit = createToken({
  name: "Number",
  pattern: /(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?/,
});
export const StringLit = createToken({ name: "String", pattern: /"(?:[^"\\\n]|\\["\\/nt{}])*"/ });
/**
 * A string with no closing quote on its line, or with an unknown escape. The front end reports
 * it; as a kind of String the parser takes it in stride, so one mistake is one error.
 */
export const BadString = createToken({
  name: "BadString",
  pattern: /"(?:[^"\\\n]|\\[^\n])*"?/,
  categories: [StringLit],
});

export const Arrow = createToken({ name: "Arrow", pattern: "<-", label: "'<-'" });
export const Less = createToken({ name: "Less", pattern: "<", label: "'<'" });
export const LCurly = createToken({ name: "LCurly", pattern: "{", label: "'{'" });
export const RCurly = createToken({ name: "RCurly", pattern: "}", label: "'}'" });
export const LParen = createToken({ name: "LParen", pattern: "(", label: "'('" });
export const RParen = createToken({ name: "RParen", pattern: ")", label: "')'" });
export const LBracket = createToken({ name: "LBracket", pattern: "[", label: "'['" });
export const RBracket = createToken({ name: "RBracket", pattern: "]", label: "']'" });
export const Comma = createToken({ name: "Comma", pattern: ",", label: "','" });
export const Colon = createToken({ name: "Colon", pattern: ":", label: "':'" });
export const Equals = createToken({ name: "Equals", pattern: "=", label: "'='" });
export const Plus = createToken({ name: "Plus", pattern: "+", label: "'+'" });
export const Minus = createToken({ name: "Minus", pattern: "-", label: "'-'" });
export const Star = createToken({ name: "Star", pattern: "*", label: "'*'" });
export const Slash = createToken({ name: "Slash", pattern: "/", label: "'/'" });
export const Dot = createToken({ name: "Dot", pattern: ".", label: "'.'" });

const WhiteSpace = createToken({ name: "WhiteSpace", pattern: /\s+/, group: Lexer.SKIPPED });
const LineComment = createToken({ name: "LineComment", pattern: /\/\/[^\n]*/, group: Lexer.SKIPPED });
const BlockComment = createToken({ name: "BlockComment", pattern: /\/\*[\s\S]*?\*\//, group: Lexer.SKIPPED });

// Order matters: comments before Slash, Arrow before Less/Minus, Number before Dot, keywords before Identifier.
export const allTokens: TokenType[] = [
  WhiteSpace,
  LineComment,
  BlockComment,
  Model,
  Param,
  Weights,
  Forward,
  For,
  Return,
  Quantization,
  Target,
  Default,
  Identifier,
  NumberLit,
  StringLit,
  BadString,
  Arrow,
  Less,
  LCurly,
  RCurly,
  LParen,
  RParen,
  LBracket,
  RBracket,
  Comma,
  Colon,
  Equals,
  Plus,
  Minus,
  Star,
  Slash,
  Dot,
];

export const moeLexer = new Lexer(allTokens, { ensureOptimizations: true, positionTracking: "full" });
