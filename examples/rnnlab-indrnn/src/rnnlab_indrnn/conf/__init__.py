"""Presets of rnnlab-indrnn (experiment/, sweep/), found through the ``rnnlab.conf`` entry point."""
