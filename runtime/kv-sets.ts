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
