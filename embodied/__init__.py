"""embodied: environments, drivers, replay and run loops for training agents.

`import embodied` never imports JAX; the JAX half lives in `embodied.jax`.
"""

from . import envs, run  # noqa: F401,E402
from .core import *  # noqa: F401,F403
