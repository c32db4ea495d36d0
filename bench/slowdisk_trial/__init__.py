"""A slow disk (fsync stalls) on one member of a real cluster: see __main__.py."""
