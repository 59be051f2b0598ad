"""Embeddings and rerank: POST /v1/embeddings (OpenAI's shape) and POST /v1/rerank (Jina's and Cohere's)."""
