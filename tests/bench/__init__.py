"""Tests of the benchmark harness's verdicts (bench/), not of its figures."""
