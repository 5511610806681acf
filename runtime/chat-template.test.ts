// Chat templates rendered with @huggingface/jinja: Mistral's [INST] template, with its BOS and its
// raise_exception for a conversation out of order.
import { describe, expect, it } from "vitest";
import { MISTRAL_CHAT_TEMPLATE } from "../test/hf-folder.ts";
import { chatTemplateFromGguf, renderChat } from "./chat-template.ts";
import { CheckpointError } from "./checkpoint/errors.ts";
import { gv } from "./checkpoint/gguf-value.ts";

const source = { template: MISTRAL_CHAT_TEMPLATE, file: "tokenizer_config.json", key: "chat_template" };

describe("chat templates", () => {
  it("renders Mistral's [INST] … [/INST] template", () => {
    const text = renderChat(source, [{ role: "user", content: "What is 2+2?" }], {
      bosToken: "<s>",
      eosToken: "</s>",
    });
    expect(text).toBe("<s>[INST] What is 2+2? [/INST]");
    const turns = renderChat(
      source,
      [
        { role: "user", content: "Hi" },
        { role: "assistant", content: "Hello!" },
        { role: "user", content: "Bye" },
      ],
      { bosToken: "<s>", eosToken: "</s>" },
    );
    expect(turns).toBe("<s>[INST] Hi [/INST]Hello!</s>[INST] Bye [/INST]");
  });

  it("adds the generation prompt when the template asks for it", () => {
    const chatml = {
      ...source,
      template:
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
    };
    expect(renderChat(chatml, [{ role: "user", content: "x" }])).toBe(
      "<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\n",
    );
    expect(renderChat(chatml, [{ role: "user", content: "x" }], { addGenerationPrompt: false })).toBe(
      "<|im_start|>user\nx<|im_end|>\n",
    );
  });

  it("a template that raises or does not parse is a CheckpointError naming the file and key", () => {
    expect(() => renderChat(source, [{ role: "assistant", content: "x" }])).toThrow(
      /tokenizer_config\.json: key chat_template: the chat template failed: .*roles must alternate/,
    );
    const bad = { ...source, template: "{% for %}" };
    expect(() => renderChat(bad, [])).toThrow(CheckpointError);
    expect(() => renderChat(bad, [])).toThrow(/the chat template does not parse/);
  });

  it("reads tokenizer.chat_template from GGUF metadata", () => {
    const md = new Map([["tokenizer.chat_template", gv.str(MISTRAL_CHAT_TEMPLATE)]]);
    expect(chatTemplateFromGguf(md, "m.gguf")).toEqual({
      template: MISTRAL_CHAT_TEMPLATE,
      file: "m.gguf",
      key: "tokenizer.chat_template",
    });
    expect(chatTemplateFromGguf(new Map(), "m.gguf")).toBeUndefined();
  });
});
