"""OpenAI's Responses API (/v1/responses): a sibling of chat completions over the same inference flow."""
