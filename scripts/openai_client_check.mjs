// The official `openai` npm client against a running `lmlab serve` (scripts/openai_client_check.sh starts it):
// the model list, chat whole and streamed (the streamed text equals the whole one under greedy decoding; usage in
// both), legacy completions with logprobs, a forced tool call, and a tool round trip (the assistant's tool_calls
// and the tool's answer sent back). Each check asserts; the first failure exits non-zero.
import assert from "node:assert/strict";
import OpenAI from "openai";

const [baseURL, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey: "unused", maxRetries: 0, timeout: 120_000 });
const user = [{ role: "user", content: "What is the weather in Paris?" }];
const greedy = { model, temperature: 0, max_tokens: 12 };
let failed = 0, passed = 0;

async function check(name, body) {
  try {
    await body();
    passed++;
    console.log(`ok   ${name}`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}: ${e.message}`);
  }
}

function checkUsage(u, maxCompletion) {
  assert.ok(u, "usage missing");
  assert.ok(u.prompt_tokens > 0, `prompt_tokens ${u.prompt_tokens}`);
  assert.ok(u.completion_tokens > 0 && u.completion_tokens <= maxCompletion, `completion_tokens ${u.completion_tokens}`);
  assert.equal(u.total_tokens, u.prompt_tokens + u.completion_tokens);
}

let whole = "";
await check("models.list names the served model", async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  assert.deepEqual(ids, [model]);
});
await check("chat.completions.create, whole: content and usage", async () => {
  const r = await client.chat.completions.create({ ...greedy, messages: user });
  assert.equal(r.object, "chat.completion");
  assert.equal(r.choices[0].message.role, "assistant");
  assert.equal(typeof r.choices[0].message.content, "string");
  assert.ok(["stop", "length"].includes(r.choices[0].finish_reason), r.choices[0].finish_reason);
  checkUsage(r.usage, greedy.max_tokens);
  whole = r.choices[0].message.content;
});
await check("chat.completions.create, streamed: the same text, usage in the last chunk", async () => {
  const stream = await client.chat.completions.create({ ...greedy, messages: user, stream: true,
                                                        stream_options: { include_usage: true } });
  let text = "", usage = null, finish = null;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      text += c.delta?.content ?? "";
      finish = c.finish_reason ?? finish;
    }
  }
  assert.equal(text, whole);
  assert.ok(["stop", "length"].includes(finish), `finish_reason ${finish}`);
  checkUsage(usage, greedy.max_tokens);
});
await check("completions.create with logprobs: one entry per token", async () => {
  const r = await client.completions.create({ model, prompt: "The weather in Paris is", max_tokens: 6,
                                              temperature: 0, logprobs: 2 });
  const lp = r.choices[0].logprobs;
  checkUsage(r.usage, 6);
  assert.equal(lp.tokens.length, r.usage.completion_tokens);
  assert.equal(lp.token_logprobs.length, lp.tokens.length);
  assert.ok(lp.token_logprobs.every((v) => v <= 0), "log-probabilities are <= 0");
  assert.equal(lp.tokens.join(""), r.choices[0].text);
});
const tools = [{ type: "function", function: { name: "get_weather", description: "Weather of a city",
                                               parameters: { type: "object", properties: { city: { type: "string" } },
                                                             required: ["city"] } } }];
await check("a forced tool call comes back as tool_calls (or, from random weights, as an error naming the call)",
            async () => {
  // The server writes the call's opening; the model writes the arguments. A synth model's random tokens rarely make
  // JSON, so either outcome is accepted here, but never a crash or a plain answer.
  try {
    const r = await client.chat.completions.create({ ...greedy, max_tokens: 24, messages: user, tools,
                                                     tool_choice: { type: "function", function: { name: "get_weather" } } });
    const c = r.choices[0];
    console.log(`     finish_reason ${c.finish_reason}` +
                (c.message.tool_calls ? `, arguments ${JSON.stringify(c.message.tool_calls[0].function.arguments)}` : ""));
    if (c.finish_reason === "tool_calls") {
      assert.equal(c.message.tool_calls[0].function.name, "get_weather");
      assert.equal(typeof c.message.tool_calls[0].id, "string");
    } else {
      assert.equal(c.finish_reason, "length", `finish_reason ${c.finish_reason}`);
    }
  } catch (e) {
    console.log(`     ${e.status}: ${e.message}`);
    assert.ok(e instanceof OpenAI.APIError && e.status < 500, `${e.status}: ${e.message}`);
  }
});
await check("tool round trip: the assistant's tool_calls and the tool's answer sent back", async () => {
  const call = { id: "call_1", type: "function", function: { name: "get_weather", arguments: '{"city": "Paris"}' } };
  const messages = [...user, { role: "assistant", content: null, tool_calls: [call] },
                    { role: "tool", tool_call_id: "call_1", content: '{"temperature_c": 21}' }];
  const first = await client.chat.completions.create({ ...greedy, messages: user, tools });
  const r = await client.chat.completions.create({ ...greedy, messages, tools });
  assert.equal(typeof r.choices[0].message.content === "string" || r.choices[0].message.tool_calls !== undefined, true);
  checkUsage(r.usage, greedy.max_tokens);
  assert.ok(r.usage.prompt_tokens > first.usage.prompt_tokens, "the call and its answer are in the prompt");
});
await check("a bad request is an APIError with status 400, not a crash", async () => {
  await assert.rejects(client.chat.completions.create({ model, messages: [{ role: "user", content: 42 }] }),
                       (e) => e instanceof OpenAI.APIError && e.status === 400);
});
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
