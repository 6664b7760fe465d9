"""Parts of `benchmarks/fault_injection.py` kept in their own modules."""
