"""Built-in regularizers that work with the fused backbones."""
