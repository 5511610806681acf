import { describe, expect, it } from "vitest";
import { Accountant, BudgetExceededError } from "./accountant.ts";

describe("Accountant", () => {
  it("bumps from 0, aligning each region", () => {
    const a = new Accountant(1000);
    expect(a.alloc("weights", 10)).toBe(0);
    expect(a.alloc("weights", 5)).toBe(64);
    expect(a.alloc("kv", 3, 16)).toBe(80);
    expect(a.alloc("arena", 7, 1)).toBe(83);
    expect(a.used).toBe(90);
    expect(a.byLabel()).toEqual({ weights: 15, kv: 3, arena: 7 });
    expect(a.padding).toBe(90 - 25);
  });

  it("a region may end exactly at the budget", () => {
    const a = new Accountant(128);
    a.alloc("weights", 1);
    expect(a.alloc("kv", 64)).toBe(64);
    expect(a.used).toBe(128);
  });

  it("refuses past the budget with the label and the numbers, reserving nothing", () => {
    const a = new Accountant(100);
    a.alloc("weights", 40);
    let err: unknown;
    try {
      a.alloc("expert slots", 50);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(BudgetExceededError);
    const e = err as BudgetExceededError;
    expect(e.message).toBe(
      "device memory budget exceeded allocating 50 bytes for expert slots: 40 of 100 bytes are in use (+24 alignment), 114 would be needed (14 over)",
    );
    expect(e).toMatchObject({ label: "expert slots", requested: 50, used: 40, budget: 100, exitCode: 2 });
    expect(a.used).toBe(40);
    expect(a.byLabel()).toEqual({ weights: 40 });
    expect(a.alloc("expert slots", 50, 1)).toBe(40);
  });

  it("keeps the peak across reset", () => {
    const a = new Accountant(1 << 20);
    a.alloc("weights", 1000);
    a.alloc("kv", 500);
    const peak = a.used;
    a.reset();
    expect(a.used).toBe(0);
    expect(a.byLabel()).toEqual({});
    expect(a.alloc("arena", 10)).toBe(0);
    expect(a.peak).toBe(peak);
    a.alloc("arena", 5000);
    expect(a.peak).toBe(a.used);
  });

  it("rejects nonsense sizes and alignments", () => {
    expect(() => new Accountant(-1)).toThrow(/whole number/);
    const a = new Accountant(100);
    expect(() => a.alloc("kv", 1.5)).toThrow(/1.5 bytes for kv/);
    expect(() => a.alloc("kv", 1, 3)).toThrow(/alignment 3 for kv is not a power of two/);
    expect(a.alloc("zero", 0)).toBe(0);
  });
});
