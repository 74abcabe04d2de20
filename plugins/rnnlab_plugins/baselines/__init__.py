"""Built-in baselines, registered under the entry-point group ``rnnlab.baselines``."""
