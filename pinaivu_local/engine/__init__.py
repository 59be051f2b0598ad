"""The inference engine: llama.cpp through its low-level bindings, behind a small interface.

Nothing in this package knows about HTTP; nothing outside it touches ctypes.
"""
