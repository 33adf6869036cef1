"""lcm publisher: the CPython command line, the signing side and the release host."""

# The version of lcm (pyproject.toml reads it from here); `lcm --version` prints it.
__version__ = "0.1.0"
