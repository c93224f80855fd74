"""Acting on the plan: the stream manager, upstream health, access logs, TLS certificates."""
