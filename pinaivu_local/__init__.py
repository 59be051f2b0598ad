"""pinaivu-local: the Pinaivu OpenAI-compatible API in one local process."""

__version__ = "0.1.0"
