"""Benchmarks of the ingest path and the worker (`make bench`); not tests, and not run by `make test`."""
