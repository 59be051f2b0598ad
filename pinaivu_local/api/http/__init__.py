"""HTTP plumbing every API family shares: authentication and guards, the request's context, the
connection and body deadlines, requests in flight per key, access log and metrics, rate-limit headers,
error rendering, body validation and the OpenAPI document's bodies and errors."""
