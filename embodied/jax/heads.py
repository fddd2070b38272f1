"""Heads: an MLP followed by linear output layers that parameterise an output distribution."""

from collections.abc import Callable

import elements
import jax
import jax.numpy as jnp
import ninjax as nj
import numpy as np
from jaxtyping import Array, Float

from . import nets, outs

Space = elements.Space | tuple[int, ...]
Features = Float[Array, '*batch features']

f32 = jnp.float32

OUTPUTS = (
    'binary',
    'categorical',
    'onehot',
    'mse',
    'huber',
    'symlog_mse',
    'symexp_twohot',
    'bounded_normal',
    'normal_logstd',
)


class MLPHead(nj.Module):
    """MLP (`layers` x [Linear -> Norm -> act]) then a Head (one space) or DictHead (dict).

    Call with the input features and the number of batch dimensions (default: all but the
    last axis); the features after the batch dimensions are flattened.
    """

    layers: int = 5
    units: int = 1024
    act: str = 'silu'
    norm: str = 'rms'
    bias: bool = True
    winit: str | Callable = 'trunc_normal_in'
    binit: str | Callable = 'zeros'

    def __init__(
        self, space: Space | dict[str, Space], output: str | dict[str, str], **head_kwargs
    ):
        shared = dict(bias=self.bias, winit=self.winit, binit=self.binit)
        self.mlp = nets.MLP(
            self.layers, self.units, act=self.act, norm=self.norm, **shared, name='mlp'
        )
        if isinstance(space, dict):
            self.head = DictHead(space, output, **shared, **head_kwargs, name='head')
        else:
            self.head = Head(space, output, **shared, **head_kwargs, name='head')

    def __call__(self, x: Array, bdims: int | None = None) -> outs.Output | dict[str, outs.Output]:
        """Return the output (or dict of outputs) for features x."""
        bdims = x.ndim - 1 if bdims is None else bdims
        x = x.reshape((*x.shape[:bdims], -1))
        x = self.mlp(x)
        return self.head(x)


class DictHead(nj.Module):
    """One Head per key of a dict of spaces; keyword arguments go to every Head."""

    def __init__(self, spaces: Space | dict[str, Space], outputs: str | dict[str, str], **kw):
        if not isinstance(spaces, dict):
            spaces = {'output': spaces}
        if not isinstance(outputs, dict):
            outputs = {key: outputs for key in spaces}
        if not spaces:
            raise ValueError('DictHead needs at least one space.')
        if set(spaces) != set(outputs):
            raise ValueError(
                f'DictHead spaces {sorted(spaces)} and outputs {sorted(outputs)} differ in keys.'
            )
        self.spaces = spaces
        self.outputs = outputs
        self.kw = kw

    def __call__(self, x: Features) -> dict[str, outs.Output]:
        """Dict of outputs, one per key."""
        return {
            key: self.sub(key, Head, self.spaces[key], self.outputs[key], **self.kw)(x)
            for key in self.spaces
        }


class Head(nj.Module):
    """Linear output layer(s) for one space and output type (see OUTPUTS).

    Outputs whose space has a non-empty shape are wrapped in `outs.Agg` over that shape.
    """

    minstd: float | int = 1.0
    maxstd: float | int = 1.0
    unimix: float | int = 0.0
    bins: int = 255
    outscale: float | int = 1.0
    bias: bool = True
    winit: str | Callable = 'trunc_normal_in'
    binit: str | Callable = 'zeros'

    def __init__(self, space: Space, output: str):
        if output not in OUTPUTS:
            raise ValueError(f"Unknown head output '{output}': use one of {OUTPUTS}.")
        if isinstance(space, tuple):
            space = elements.Space(np.float32, space)
        self.space = space
        self.impl = output

    def __call__(self, x: Features) -> outs.Output:
        """Build the output distribution from features x (last axis)."""
        x = nets.check_dtype(x, self.path)
        output = getattr(self, '_' + self.impl)(x)
        if self.space.shape:
            output = outs.Agg(output, len(self.space.shape), jnp.sum)
        # One-hot predictions carry the class axis after the space shape.
        shape = self.space.shape
        if self.impl == 'onehot':
            shape = (*shape, self._classes())
        pshape = output.pred().shape[x.ndim - 1 :]
        assert pshape == shape, (self.path, self.impl, self.space, x.shape, pshape)
        return output

    def _linear(self, name, shape, x):
        kw = dict(bias=self.bias, winit=self.winit, binit=self.binit, outscale=self.outscale)
        return self.sub(name, nets.Linear, shape, **kw)(x)

    def _classes(self):
        classes = np.asarray(self.space.classes).flatten()
        if not (classes == classes[0]).all():
            raise ValueError(f'{self.path}: all entries need the same class count, got {classes}.')
        return int(classes[0])

    def _continuous(self):
        if self.space.discrete:
            raise ValueError(
                f"{self.path}: output '{self.impl}' needs a float space, got {self.space}."
            )

    def _binary(self, x):
        if not self.space.discrete or not np.all(np.asarray(self.space.classes) == 2):
            raise ValueError(f"{self.path}: 'binary' needs a bool space, got {self.space}.")
        return outs.Binary(self._linear('logits', self.space.shape, x))

    def _categorical(self, x):
        if not self.space.discrete:
            raise ValueError(f"{self.path}: 'categorical' needs a discrete space.")
        classes = self._classes()
        logits = self._linear('logits', (*self.space.shape, classes), x)
        # No unimix here even when the config sets one: the reference's categorical head ignores
        # it too, so discrete policies behave as there.
        output = outs.Categorical(logits)
        output.minent = 0.0
        output.maxent = float(np.log(classes))
        return output

    def _onehot(self, x):
        if not self.space.discrete:
            raise ValueError(f"{self.path}: 'onehot' needs a discrete space.")
        logits = self._linear('logits', (*self.space.shape, self._classes()), x)
        return outs.OneHot(logits, self.unimix)

    def _mse(self, x):
        self._continuous()
        return outs.MSE(self._linear('mean', self.space.shape, x))

    def _huber(self, x):
        self._continuous()
        return outs.Huber(self._linear('mean', self.space.shape, x))

    def _symlog_mse(self, x):
        self._continuous()
        return outs.MSE(self._linear('mean', self.space.shape, x), nets.symlog)

    def _symexp_twohot(self, x):
        self._continuous()
        logits = self._linear('logits', (*self.space.shape, self.bins), x)
        return outs.TwoHot(logits, outs.symexp_bins(self.bins))

    def _bounded_normal(self, x):
        self._continuous()
        mean = self._linear('mean', self.space.shape, x)
        std = self._linear('stddev', self.space.shape, x)
        lo, hi = float(self.minstd), float(self.maxstd)
        std = (hi - lo) * jax.nn.sigmoid(std.astype(f32) + 2.0) + lo
        output = outs.Normal(jnp.tanh(mean.astype(f32)), std)
        output.minent = outs.Normal(jnp.zeros(mean.shape, f32), lo).entropy()
        output.maxent = outs.Normal(jnp.zeros(mean.shape, f32), hi).entropy()
        return output

    def _normal_logstd(self, x):
        self._continuous()
        mean = self._linear('mean', self.space.shape, x)
        logstd = self._linear('stddev', self.space.shape, x)
        return outs.Normal(mean, jnp.exp(logstd.astype(f32)))
