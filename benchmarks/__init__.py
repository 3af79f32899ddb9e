"""Benchmarks: micro (pytest-benchmark, ``pytest benchmarks/micro``) and load
(``python -m benchmarks run [SCENARIO...]``). See benchmarks/README.md."""
