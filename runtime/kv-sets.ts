// Several sequences' KV caches (a server's parallel slots) are placed as one list, sequence by sequence, as
// withSequences (manifest.ts) repeats the manifest's caches. A model keeps the list split per sequence and
// binds one sequence's part at a time; the CPU and GPU models share these two steps.

/** `all` (every sequence's KV views, `per` to a sequence) split per sequence. */
export function splitBySequence<T>(all: readonly T[], per: number): T[][] {
  return Array.from({ length: all.length / per }, (_, s) => all.slice(s * per, (s + 1) * per));
}

/** Sequence `s`'s views; past the last, a RangeError that says how many there are. */
export function sequenceSet<T>(sets: readonly T[][], s: number): T[] {
  const set = sets[s];
  if (!set) throw new RangeError(`sequence ${s} does not exist (the model has ${sets.length})`);
  return set;
}

/**
 * The KV views of a batched step's sequences (a token of each: tokens[i] at positions[i] of sequence
 * seqs[i]), after checking the step: as many positions and sequences as tokens, each sequence once, each
 * position inside the context.
 */
export function stepSets<T>(
  sets: readonly T[][],
  tokens: readonly number[],
  positions: readonly number[],
  seqs: readonly number[],
  maxContext: number,
): T[][] {
  const n = tokens.length;
  if (positions.length !== n || seqs.length !== n)
    throw new RangeError(`stepBatch: ${n} tokens need as many positions and sequences`);
  if (new Set(seqs).size !== n) throw new RangeError("stepBatch: each sequence at most once per batch");
  for (const p of positions) {
    if (!Number.isInteger(p) || p < 0 || p >= maxContext)
      throw new RangeError(`position ${p} is outside the context of ${maxContext}`);
  }
  return seqs.map((s) => sequenceSet(sets, s));
}
