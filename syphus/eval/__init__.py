"""Evaluation: benchmarks read from their distributed files, lenient answer parsing, scoring with
each benchmark's documented rule, and statistics (standard errors, intervals, paired differences)."""
