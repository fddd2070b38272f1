"""The JAX half of embodied: setup, layers, outputs, heads, optimizer and the JAX agent."""

from . import heads, nets, opt, outs, utils  # noqa: F401
from .agent import Agent  # noqa: F401
from .heads import DictHead, Head, MLPHead  # noqa: F401
from .opt import Optimizer  # noqa: F401
from .setup import setup  # noqa: F401
from .utils import Normalize, SlowModel  # noqa: F401
