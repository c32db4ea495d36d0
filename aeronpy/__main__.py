"""``python -m aeronpy``: the same as the ``aeronpy`` console script."""
from aeronpy.cli import main

raise SystemExit(main())
