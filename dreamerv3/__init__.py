"""DreamerV3: world model, actor-critic and the command line entry point.

`dreamerv3.load_policy(logdir)` loads a trained agent's policy for the user's own loop; see
`dreamerv3/policy.py`. Importing the package does not import JAX.
"""

from .policy import load_policy  # noqa: F401
