"""Process pauses (SIGSTOP/SIGCONT) on a real cluster: see __main__.py."""
