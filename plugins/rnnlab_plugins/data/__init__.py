"""Built-in data modules: real and synthetic series, and the user's own CSV file."""
