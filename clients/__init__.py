"""Reference clients of the deepscreen API that run as their own processes (see clients/*/README.md)."""
