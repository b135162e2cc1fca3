"""HTTP routes: ``openai`` (/v1/chat/completions, /v1/completions, /v1/models), ``memory`` (/v1/memory/...), ``health``."""
