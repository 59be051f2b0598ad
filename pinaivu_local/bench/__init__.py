"""`pinaivu-local bench`: our server against llama_cpp.server over real HTTP, same model, same run."""
