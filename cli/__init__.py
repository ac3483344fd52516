"""The ``deepscreen`` command line."""
