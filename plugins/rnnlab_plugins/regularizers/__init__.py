"""Built-in regularizers; they use the hooks every backbone supports (see rnnlab.regularizer)."""
