"""The JAX half of embodied: setup, layers, outputs, heads, optimizer and the JAX agent."""
