"""Simulators: real servers that speak an outside system's API on loopback, for tests and
demos without that system (the AOC simulator). Clearly not the real thing: every banner,
log line and help text says "simulator"."""
