"""Example services to copy.

``aeronpy.examples.matching_engine.MatchingEngine``: a limit-order-book matching engine, with
its wire format in ``aeronpy.examples.orders``. Host it with::

    aeronpy node --config cluster.toml --member-id 0 \\
        --service aeronpy.examples.matching_engine:MatchingEngine
"""
