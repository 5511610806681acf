// Which cached expert to evict when a layer's slots are full. One policy instance per layer; it sees
// expert ids (not slot numbers), so a policy may remember an expert after it was evicted: LFU does,
// because an MoE router's favourite experts stay favourites, and a count that restarted at every load
// would make each newly loaded expert the next victim.
//
// The cache tells the policy what happened (insert, touch, evict) and asks it for a victim among the
// resident experts it may evict (the ones the current call needs are excluded).

export interface EvictionPolicy {
  readonly name: string;
  /** `expert` was loaded into a slot (by a demand miss or a prefetch). */
  insert(expert: number): void;
  /** A demand access to `expert`, resident (a hit, or right after the insert of a miss). */
  touch(expert: number): void;
  /** `expert` left its slot. */
  evict(expert: number): void;
  /** The resident expert to evict next, not one in `exclude`; -1 when every resident expert is excluded. */
  victim(exclude: ReadonlySet<number>): number;
}

/** Least recently used: the resident expert whose last insert or touch is oldest. */
export class LruPolicy implements EvictionPolicy {
  readonly name = "lru";
  private clock = 0;
  /** Resident expert → when it was last inserted or touched. */
  private readonly last = new Map<number, number>();

  insert(expert: number): void {
    this.last.set(expert, ++this.clock);
  }
  touch(expert: number): void {
    if (this.last.has(expert)) this.last.set(expert, ++this.clock);
  }
  evict(expert: number): void {
    this.last.delete(expert);
  }
  victim(exclude: ReadonlySet<number>): number {
    let best = -1;
    let oldest = Number.POSITIVE_INFINITY;
    for (const [e, t] of this.last) {
      if (t < oldest && !exclude.has(e)) {
        best = e;
        oldest = t;
      }
    }
    return best;
  }
}

/**
 * Least frequently used: the resident expert with the fewest demand accesses so far (counted across
 * evictions), the least recently used among equals. A prefetch load adds no use.
 */
export class LfuPolicy implements EvictionPolicy {
  readonly name = "lfu";
  private clock = 0;
  /** Every expert ever seen → demand accesses; kept after eviction (at most the layer's expert count). */
  private readonly uses = new Map<number, number>();
  /** Resident expert → when it was last inserted or touched. */
  private readonly last = new Map<number, number>();

  insert(expert: number): void {
    this.last.set(expert, ++this.clock);
  }
  touch(expert: number): void {
    this.uses.set(expert, (this.uses.get(expert) ?? 0) + 1);
    if (this.last.has(expert)) this.last.set(expert, ++this.clock);
  }
  evict(expert: number): void {
    this.last.delete(expert);
  }
  victim(exclude: ReadonlySet<number>): number {
    let best = -1;
    let fewest = Number.POSITIVE_INFINITY;
    let oldest = Number.POSITIVE_INFINITY;
    for (const [e, t] of this.last) {
      if (exclude.has(e)) continue;
      const n = this.uses.get(e) ?? 0;
      if (n < fewest || (n === fewest && t < oldest)) {
        best = e;
        fewest = n;
        oldest = t;
      }
    }
    return best;
  }
}

const POLICIES: Record<string, () => EvictionPolicy> = {
  lru: () => new LruPolicy(),
  lfu: () => new LfuPolicy(),
};

export const policyNames = Object.keys(POLICIES);

export class UnknownPolicyError extends Error {
  override readonly name = "UnknownPolicyError";
  readonly exitCode = 2;
  constructor(readonly policy: string) {
    super(`unknown expert cache policy \`${policy}\` (known: ${policyNames.join(", ")})`);
  }
}

/** A factory for the named policy (case-insensitive); each call of it makes a fresh instance, one per layer. */
export function policyByName(name: string): () => EvictionPolicy {
  const make = POLICIES[name.toLowerCase()];
  if (!make) throw new UnknownPolicyError(name);
  return make;
}
