"""Tests of the fault-injection run's verdicts (chaos/): that a bad run fails."""
