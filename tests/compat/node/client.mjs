// The openai Node SDK as its users call it: a chat, a stream and a forced tool call against
// OPENAI_BASE_URL with OPENAI_API_KEY (the SDK reads both). Prints what it got as one JSON line.
import OpenAI from "openai";

const client = new OpenAI({ maxRetries: 0 });
const model = process.env.PINAIVU_MODEL;
const messages = [{ role: "user", content: "Hello" }];

const chat = await client.chat.completions.create({ model, messages, max_tokens: 32 });

let streamed = "";
let streamFinish = null;
let streamUsage = null;
const stream = await client.chat.completions.create({
  model, messages, max_tokens: 32, stream: true, stream_options: { include_usage: true },
});
for await (const chunk of stream) {
  if (chunk.choices.length) {
    streamed += chunk.choices[0].delta.content ?? "";
    streamFinish = chunk.choices[0].finish_reason ?? streamFinish;
  }
  streamUsage = chunk.usage ?? streamUsage;
}

const weather = {
  type: "function",
  function: {
    name: "get_weather",
    parameters: {
      type: "object",
      properties: { city: { type: "string" }, unit: { enum: ["celsius", "fahrenheit"] } },
      required: ["city", "unit"],
    },
  },
};
const called = await client.chat.completions.create({
  model, messages: [{ role: "user", content: "Weather in Oslo?" }], tools: [weather],
  tool_choice: { type: "function", function: { name: "get_weather" } },
});

console.log(JSON.stringify({
  chat: { finish: chat.choices[0].finish_reason, content: chat.choices[0].message.content, usage: chat.usage },
  stream: { finish: streamFinish, text: streamed, usage: streamUsage },
  call: { finish: called.choices[0].finish_reason, calls: called.choices[0].message.tool_calls },
}));
