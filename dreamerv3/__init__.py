"""DreamerV3: world model, actor-critic and the command line entry point."""
