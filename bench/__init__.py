"""``facegate bench``: programs that print speed and memory figures (BENCHMARKS.md).

Outside the device runtime: nothing in ``facegate`` itself imports this package;
the ``bench`` command loads it when asked (``facegate.bench.cli``).
"""
