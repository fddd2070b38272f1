"""Run loops that wire agent, environments, replay and logger together."""
