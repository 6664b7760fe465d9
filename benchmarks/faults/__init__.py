"""The fault suite's parts, one module each, run by `benchmarks/fault_injection.py`.

1 `reference`, 2 `kills`, 3 `readers`, 4 `disk_full`, 5 `corrupt_caches`, 6 `bad_images`,
7 `user_files`; `common` holds what they share. The bad inputs come from `tests/bad_inputs.py`.
"""
