"""IndRNN and Seattle daily weather for rnnlab: an example of a third-party plugin package."""
