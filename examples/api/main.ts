// moec as a library: load a model, complete, stream, chat with history, and stop a call with an
// AbortSignal. Run from the repository root: npx tsx examples/api/main.ts models/stories260K.gguf
import { AbortError, ContextLengthError, loadModel } from "moec";

const path = process.argv[2] ?? "models/stories260K.gguf";
// Options and defaults are `moec run`'s. stories260K ships no chat template, so one is given for chat().
const model = await loadModel(path, {
  threads: 2,
  chatTemplate: "{% for m in messages %}{{ m.content }}\n{% endfor %}",
});
console.log(`${model.info.name}: ${model.info.contextLength} tokens of context`);

// One call, greedy: the text, its tokens and why it stopped.
const { text, tokens, finishReason } = await model.complete("Once upon a time", {
  maxTokens: 24,
  temperature: 0,
});
console.log(`complete: ${JSON.stringify(text)} (${tokens.length} tokens, ${finishReason})`);

// The same, piece by piece.
process.stdout.write("stream:");
for await (const piece of model.stream("Once upon a time", { maxTokens: 24, temperature: 0 })) {
  process.stdout.write(piece);
}
process.stdout.write("\n");

// A chat keeps its history.
const chat = model.chat({ system: "Lily and Tom were friends." });
const answer = await chat.send("One day, they went to the park.", { maxTokens: 16, temperature: 0 });
console.log(`chat: ${JSON.stringify(answer.text)} (${chat.history.length} messages)`);

// Every call takes an AbortSignal; the errors are classes.
try {
  await model.complete("Once upon a time", { maxTokens: 1000, signal: AbortSignal.timeout(1) });
} catch (e) {
  if (e instanceof AbortError) console.log("aborted: the call stopped and its slot is free");
}
try {
  await model.complete("word ".repeat(model.info.contextLength));
} catch (e) {
  if (e instanceof ContextLengthError) console.log(`too long: ${e.promptTokens} > ${e.contextTokens} tokens`);
}
await model.close();
