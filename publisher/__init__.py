"""lcm publisher: the CPython command line, the signing side and the release host."""
