"""abdr benchmarks: `python -m bench [backup|replication]` (see README.md, "Benchmarks"). Never part of the tests."""
