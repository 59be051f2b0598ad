"""The HTTP layer: Litestar routes in the OpenAI shape. Never touches ctypes."""
