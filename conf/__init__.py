"""rnnlab's Hydra configs, shipped inside the wheel and read as ``pkg://rnnlab.conf``."""
