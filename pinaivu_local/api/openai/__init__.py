"""OpenAI's chat and text completions: request bodies (protocol), answer shapes (responses), serving
whole or streamed (serving), tools and structured output, logprobs, the routes, and verification replays."""
