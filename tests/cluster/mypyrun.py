"""mypy for the typing tests, in a child process: in the test process it raises the recursion
limit for good (a later test of the config loader's nesting refusal then saw no RecursionError)
and keeps modules cached."""
import subprocess
import sys


def mypy_in_a_child(args):
    """(stdout, stderr, exit status) of ``python -m mypy *args``."""
    done = subprocess.run([sys.executable, "-m", "mypy", *args], capture_output=True, text=True,
                          timeout=600)
    return done.stdout, done.stderr, done.returncode
