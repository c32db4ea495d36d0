"""Big messages on a real cluster: see __main__.py."""
