// The one memory accountant: every device allocation (weights, KV caches, the activation arena, expert
// cache slots) goes through it, so the runtime can prove what the plan promised: the peak never exceeds
// the budget, and the bytes per category are known exactly.
//
// The plan allocates once, up front, so this is a bump allocator: offsets only grow, and the only "free"
// is reset(). Offsets are byte addresses in one device memory (the CPU backend's heap) starting at 0.

/** Regions start on cache lines by default: SIMD loads do not straddle one needlessly, f32 views stay aligned. */
export const DEFAULT_ALIGN = 64;

export class BudgetExceededError extends RangeError {
  override readonly name = "BudgetExceededError";
  /** The CLI treats errors with an exitCode as the user's (a budget too small), printed without a stack. */
  readonly exitCode = 2;
  constructor(
    readonly label: string,
    readonly requested: number,
    readonly used: number,
    readonly budget: number,
    /** Alignment padding this allocation would have added before its start. */
    readonly padding: number,
  ) {
    const need = used + padding + requested;
    super(
      `device memory budget exceeded allocating ${requested} bytes for ${label}: ` +
        `${used} of ${budget} bytes are in use${padding ? ` (+${padding} alignment)` : ""}, ` +
        `${need} would be needed (${need - budget} over)`,
    );
  }
}

export class Accountant {
  private top = 0;
  private high = 0;
  private pad = 0;
  private readonly labels = new Map<string, number>();

  constructor(readonly budget: number) {
    if (!Number.isSafeInteger(budget) || budget < 0) {
      throw new RangeError(`a memory budget must be a whole number of bytes, not ${budget}`);
    }
  }

  /**
   * Reserves `bytes` for `label` (a category: "weights", "kv", "arena", "expert slots", …) and returns
   * its byte offset, a multiple of `align`. Throws BudgetExceededError, with the numbers, when the end of
   * the region would pass the budget; nothing is reserved then.
   */
  alloc(label: string, bytes: number, align = DEFAULT_ALIGN): number {
    if (!Number.isSafeInteger(bytes) || bytes < 0) {
      throw new RangeError(`cannot allocate ${bytes} bytes for ${label}: not a whole number of bytes`);
    }
    if (!Number.isSafeInteger(align) || align < 1 || (align & (align - 1)) !== 0) {
      throw new RangeError(`alignment ${align} for ${label} is not a power of two`);
    }
    const at = Math.ceil(this.top / align) * align;
    if (at + bytes > this.budget) {
      throw new BudgetExceededError(label, bytes, this.top, this.budget, at - this.top);
    }
    this.pad += at - this.top;
    this.top = at + bytes;
    this.high = Math.max(this.high, this.top);
    this.labels.set(label, (this.labels.get(label) ?? 0) + bytes);
    return at;
  }

  /** Bytes from 0 to the end of the last region, alignment padding included: the device memory needed. */
  get used(): number {
    return this.top;
  }

  /** The most `used` has ever been (reset() does not lower it). */
  get peak(): number {
    return this.high;
  }

  /** Bytes lost to alignment: `used` is the sum of byLabel() plus this. */
  get padding(): number {
    return this.pad;
  }

  /** Bytes asked for, per label (padding not included). */
  byLabel(): Record<string, number> {
    return Object.fromEntries(this.labels);
  }

  /** Forgets every region (offsets start again at 0); the peak is kept. */
  reset(): void {
    this.top = 0;
    this.pad = 0;
    this.labels.clear();
  }
}
