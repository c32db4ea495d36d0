"""Packet-loss trial of a 3-process cluster; run ``python bench/loss_trial --help``."""
