"""rnnlab: a plugin-based experiment framework for recurrent networks.

Importing the package is cheap: torch, Lightning and MLflow load only when a run starts
(``from rnnlab.train import train``).
"""

__version__ = "0.1.0"
