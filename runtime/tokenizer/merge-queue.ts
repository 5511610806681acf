// The priority queue of candidate merges that both BPE loops use (SentencePiece's by score, byte-level's by
// rank): the best key first, and among equal keys the leftmost pair, as llama.cpp's std::priority_queue
// comparators order them. A binary heap over parallel arrays, reused across a word's merges.
export class MergeQueue<T> {
  private readonly key: number[] = [];
  private readonly left: number[] = [];
  private readonly right: number[] = [];
  private readonly payload: T[] = [];
  private n = 0;

  get length(): number {
    return this.n;
  }

  /** Lower key first, then smaller left index. */
  private before(a: number, b: number): boolean {
    const ka = this.key[a]!;
    const kb = this.key[b]!;
    return ka < kb || (ka === kb && this.left[a]! < this.left[b]!);
  }

  private swap(a: number, b: number): void {
    for (const arr of [this.key, this.left, this.right, this.payload] as unknown[][]) {
      const t = arr[a];
      arr[a] = arr[b];
      arr[b] = t;
    }
  }

  /** Adds the pair (left, right) with its key (lower merges first) and what the caller checks it by. */
  push(key: number, left: number, right: number, payload: T): void {
    let i = this.n++;
    this.key[i] = key;
    this.left[i] = left;
    this.right[i] = right;
    this.payload[i] = payload;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.before(i, p)) break;
      this.swap(i, p);
      i = p;
    }
  }

  /** Removes the best entry and returns [left, right, payload]. */
  pop(): [number, number, T] {
    const top: [number, number, T] = [this.left[0]!, this.right[0]!, this.payload[0]!];
    const last = --this.n;
    if (last > 0) {
      this.swap(0, last);
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let best = i;
        if (l < last && this.before(l, best)) best = l;
        if (r < last && this.before(r, best)) best = r;
        if (best === i) break;
        this.swap(i, best);
        i = best;
      }
    }
    // Drop the popped payload's reference (a merged string) rather than keep it past its use.
    this.payload.length = this.n;
    return top;
  }
}
