"""Built-in recurrent backbones on PyTorch's fused modules (cuDNN on GPU)."""
