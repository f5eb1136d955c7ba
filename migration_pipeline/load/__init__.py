"""Load: the plan's payloads into amoCRM, partition by partition, exactly once."""
