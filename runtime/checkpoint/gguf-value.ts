// GGUF metadata values, typed so that the wire type is always explicit: a u32 and an i32 holding
// the same number are different values, and llama.cpp cares which one it gets
// (e.g. `llama.expert_count` is u32, `tokenizer.ggml.token_type` is an array of i32).
//
// The reader produces exactly these values and the writer consumes them, so a file read and
// written again keeps every type. 64-bit integers (u64, i64) are always bigint when read, so no
// value is ever rounded; the writer also accepts a safe-integer number for them. Use `plainValue`
// to get ordinary JS values (bigint → number when it is a safe integer).

export type GgufScalarType =
  | "u8"
  | "i8"
  | "u16"
  | "i16"
  | "u32"
  | "i32"
  | "f32"
  | "bool"
  | "string"
  | "u64"
  | "i64"
  | "f64";
export type GgufValueType = GgufScalarType | "array";

export type GgufNumberType = "u8" | "i8" | "u16" | "i16" | "u32" | "i32" | "f32" | "f64";
export type GgufBigType = "u64" | "i64";

export interface GgufNumber {
  readonly type: GgufNumberType;
  readonly value: number;
}
export interface GgufBig {
  readonly type: GgufBigType;
  /** Read values are always bigint; the writer also takes a safe-integer number. */
  readonly value: bigint | number;
}
export interface GgufBool {
  readonly type: "bool";
  readonly value: boolean;
}
export interface GgufString {
  readonly type: "string";
  readonly value: string;
}
/**
 * An array of one element type. Items are bare JS values (numbers, bigints, booleans, strings)
 * for scalar element types, and `GgufArray`s when `of` is "array" (arrays may nest; each inner
 * array has its own element type).
 */
export interface GgufArray {
  readonly type: "array";
  readonly of: GgufValueType;
  readonly value: readonly (number | bigint | boolean | string | GgufArray)[];
}

export type GgufValue = GgufNumber | GgufBig | GgufBool | GgufString | GgufArray;

/** The u32 wire ids of GGUF metadata value types. */
export const GGUF_VALUE_TYPE_ID: Readonly<Record<GgufValueType, number>> = {
  u8: 0,
  i8: 1,
  u16: 2,
  i16: 3,
  u32: 4,
  i32: 5,
  f32: 6,
  bool: 7,
  string: 8,
  array: 9,
  u64: 10,
  i64: 11,
  f64: 12,
};

const BY_ID: readonly GgufValueType[] = Object.entries(GGUF_VALUE_TYPE_ID)
  .sort((a, b) => a[1] - b[1])
  .map(([name]) => name as GgufValueType);

export function ggufValueTypeFromId(id: number): GgufValueType | undefined {
  return BY_ID[id];
}

/** Bytes one value of a fixed-size type takes; undefined for string and array. */
export function fixedSize(t: GgufValueType): number | undefined {
  switch (t) {
    case "u8":
    case "i8":
    case "bool":
      return 1;
    case "u16":
    case "i16":
      return 2;
    case "u32":
    case "i32":
    case "f32":
      return 4;
    case "u64":
    case "i64":
    case "f64":
      return 8;
    default:
      return undefined;
  }
}

/** The fewest bytes one value of this type can take on the wire (string: its u64 length; array: type + length). */
export function minWireSize(t: GgufValueType): number {
  return fixedSize(t) ?? (t === "string" ? 8 : 12);
}

/** Builders, so that writing metadata says the wire type: `gv.u32(8)`, `gv.arr("f32", scores)`. */
export const gv = {
  u8: (value: number): GgufNumber => ({ type: "u8", value }),
  i8: (value: number): GgufNumber => ({ type: "i8", value }),
  u16: (value: number): GgufNumber => ({ type: "u16", value }),
  i16: (value: number): GgufNumber => ({ type: "i16", value }),
  u32: (value: number): GgufNumber => ({ type: "u32", value }),
  i32: (value: number): GgufNumber => ({ type: "i32", value }),
  f32: (value: number): GgufNumber => ({ type: "f32", value }),
  f64: (value: number): GgufNumber => ({ type: "f64", value }),
  u64: (value: bigint | number): GgufBig => ({ type: "u64", value }),
  i64: (value: bigint | number): GgufBig => ({ type: "i64", value }),
  bool: (value: boolean): GgufBool => ({ type: "bool", value }),
  str: (value: string): GgufString => ({ type: "string", value }),
  arr: (
    of: GgufValueType,
    value: readonly (number | bigint | boolean | string | GgufArray)[],
  ): GgufArray => ({
    type: "array",
    of,
    value,
  }),
  strings: (value: readonly string[]): GgufArray => ({ type: "array", of: "string", value }),
  f32s: (value: readonly number[] | Float32Array): GgufArray => ({
    type: "array",
    of: "f32",
    value: [...value],
  }),
  i32s: (value: readonly number[] | Int32Array): GgufArray => ({
    type: "array",
    of: "i32",
    value: [...value],
  }),
  u32s: (value: readonly number[] | Uint32Array): GgufArray => ({
    type: "array",
    of: "u32",
    value: [...value],
  }),
};

export type PlainValue = number | bigint | boolean | string | PlainValue[];

/** The value without its wire type: 64-bit integers become numbers when they are safe integers. */
export function plainValue(v: GgufValue): PlainValue {
  if (v.type === "array") return v.value.map((item) => plainItem(item));
  if (v.type === "u64" || v.type === "i64") return plainItem(v.value);
  return v.value;
}

function plainItem(item: number | bigint | boolean | string | GgufArray): PlainValue {
  if (typeof item === "bigint") {
    return item >= BigInt(Number.MIN_SAFE_INTEGER) && item <= BigInt(Number.MAX_SAFE_INTEGER)
      ? Number(item)
      : item;
  }
  if (typeof item === "object") return plainValue(item);
  return item;
}
