import { asTokens, loadLlamaCpp } from "../engines.ts";

const path = `${process.env.HOME}/.cache/moec/bench-${process.argv[2] ?? "q4_0"}-h512-l8-e8-v32000-s2024.gguf`;
const threads = Number(process.argv[3] ?? 2);
const l = await loadLlamaCpp(path, { contextSize: 256, threads, kvType: "F16" });
const prompt = Array.from({ length: 64 }, (_, i) => 300 + ((i * 7919) % 30000));
const next = { generateNext: { token: true, options: { temperature: 0 } } } as const;
const run = async (tokens: number[]) => {
  const ids = asTokens(tokens);
  const out = await l.sequence.controlledEvaluate(
    ids.map((t, i) => (i === ids.length - 1 ? ([t, next] as never) : t)),
  );
  return out.at(-1)!.next.token!;
};
const res: string[] = [];
for (let r = 0; r < 8; r++) {
  await l.sequence.clearHistory();
  let t = performance.now();
  let tok = await run(prompt);
  const pf = 64 / ((performance.now() - t) / 1000);
  t = performance.now();
  for (let i = 0; i < 32; i++) tok = await run([tok]);
  const dc = 32 / ((performance.now() - t) / 1000);
  res.push(`${pf.toFixed(0)}/${dc.toFixed(0)}`);
}
console.log(process.argv[2], "threads", threads, res.join(" "));
await l.dispose();
