"""Acting on the plan: the stream manager, upstream health monitoring, access logs."""
