"""embodied: environments, drivers, replay and run loops for training agents.

`import embodied` never imports JAX; the JAX half lives in `embodied.jax`.
"""

from .core import *  # noqa: F401,F403
from . import envs, run  # noqa: F401,E402
