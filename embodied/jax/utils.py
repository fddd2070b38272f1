"""Stateful helpers: running normalisation statistics and slowly updated model copies."""

import functools
from typing import Any

import jax
import jax.numpy as jnp
import ninjax as nj
from jaxtyping import Array, ArrayLike, Float

from .transform import DATA_AXES

f32 = jnp.float32
i32 = jnp.int32
sg = jax.lax.stop_gradient

# A statistic: a scalar array, or a plain float for impl 'none'.
Stat = Float[Array, ''] | float


def data_axes() -> tuple[str, ...]:
    """Names of the data-parallel mesh axes when tracing under shard_map, else ()."""
    for name in DATA_AXES:
        try:
            jax.lax.axis_index(name)
        except NameError:
            return ()
    return DATA_AXES


class Normalize(nj.Module):
    """Running statistics of a signal: impl 'perc' (EMA percentiles), 'meanstd' or 'none'.

    `stats()` returns (offset, scale), both stop-gradient. With `debias`, a correction term is
    EMA'd towards 1 and the statistics are divided by max(rate, correction), which removes the
    bias towards the zero initialisation early in training. Under shard_map the statistics are
    taken over the values of all data-parallel devices.
    """

    rate: float | int = 0.01
    limit: float | int = 1e-8
    perclo: float | int = 5.0
    perchi: float | int = 95.0
    debias: bool = True

    def __init__(self, impl: str):
        if impl not in ('perc', 'meanstd', 'none'):
            raise ValueError(f"Unknown Normalize impl '{impl}': use perc, meanstd or none.")
        self.impl = impl
        zeros = functools.partial(nj.Variable, jnp.zeros, (), f32)
        if impl == 'perc':
            self.lo, self.hi = zeros(name='lo'), zeros(name='hi')
        elif impl == 'meanstd':
            self.mean, self.sqrs = zeros(name='mean'), zeros(name='sqrs')
        if self.debias and impl != 'none':
            self.corr = zeros(name='corr')

    def __call__(self, x: ArrayLike, update: bool) -> tuple[Stat, Stat]:
        """Optionally update with x, then return the (fresh) statistics."""
        if update:
            self.update(x)
        return self.stats()

    def update(self, x: ArrayLike) -> None:
        """EMA update of the statistics with the values of x."""
        if self.impl == 'none':
            return
        x = sg(jnp.asarray(x).astype(f32))
        if self.impl == 'perc':
            values = self._gather(x)
            self._ema(self.lo, jnp.percentile(values, float(self.perclo)))
            self._ema(self.hi, jnp.percentile(values, float(self.perchi)))
        else:
            self._ema(self.mean, self._mean(x))
            self._ema(self.sqrs, self._mean(jnp.square(x)))
        if self.debias:
            self._ema(self.corr, jnp.ones((), f32))

    def stats(self) -> tuple[Stat, Stat]:
        """(offset, scale) of the current statistics."""
        if self.impl == 'none':
            return 0.0, 1.0
        corr = 1.0
        if self.debias:
            corr = 1.0 / jnp.maximum(float(self.rate), self.corr.read())
        limit = float(self.limit)
        if self.impl == 'perc':
            lo, hi = self.lo.read() * corr, self.hi.read() * corr
            return sg(lo), sg(jnp.maximum(limit, hi - lo))
        mean = self.mean.read() * corr
        std = jnp.sqrt(jax.nn.relu(self.sqrs.read() * corr - jnp.square(mean)))
        return sg(mean), sg(jnp.maximum(limit, std))

    def _ema(self, var, value):
        rate = float(self.rate)
        var.write((1 - rate) * var.read() + rate * sg(value))

    def _gather(self, x):
        axes = data_axes()
        return jax.lax.all_gather(x, axes) if axes else x

    def _mean(self, x):
        axes = data_axes()
        x = x.mean()
        return jax.lax.pmean(x, axes) if axes else x


class SlowModel:
    """A copy of `source` that trails it: θ̄ ← rate·θ + (1 − rate)·θ̄ every `every` updates.

    The copy is initialised as an exact copy of the source the first time it is used. Calls
    and attribute access are forwarded to the wrapped model.
    """

    def __init__(self, model: nj.Module, *, source: nj.Module, rate: float = 1.0, every: int = 1):
        if not (rate == 1 or rate < 0.5):
            raise ValueError(
                f'SlowModel rate={rate}: use exactly 1 (hard copy) or a rate below 0.5.'
            )
        if every < 1:
            raise ValueError(f'SlowModel every={every}: must be a positive number of updates.')
        self.model = model
        self.source = source
        self.rate = float(rate)
        self.every = int(every)
        self.count = nj.Variable(jnp.zeros, (), i32, name=f'{model.name}_count')

    def __getattr__(self, name):
        if name in ('model', 'source') or name.startswith('__'):
            raise AttributeError(name)
        value = getattr(self.model, name)
        if not callable(value):
            return value

        @functools.wraps(value)
        def method(*args, **kwargs):
            self._initonce()
            return value(*args, **kwargs)

        return method

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the slow model (copying the source first if it has no parameters yet)."""
        self._initonce()
        return self.model(*args, **kwargs)

    def update(self) -> None:
        """Move the slow parameters towards the source (every `every` calls)."""
        self._initonce()
        mix = jnp.where(self.count.read() % self.every == 0, self.rate, 0.0).astype(f32)
        src, dst = self.source.values, self.model.values
        for key in dst:
            new = mix * src[key].astype(f32) + (1 - mix) * dst[key].astype(f32)
            nj.Module.write(self.model, key, new)
        self.count.write(self.count.read() + 1)

    def _initonce(self):
        src = self.source.values
        if not src:
            raise RuntimeError(
                f'SlowModel {self.model.path}: source {self.source.path} has no parameters yet; '
                'call the source module before the slow copy.'
            )
        if not self.model.values:
            prefix = self.model.path + '/'
            nj.context().update({prefix + k: v for k, v in src.items()})
            self.count.read()  # Create the update counter together with the copy.
        dst = self.model.values
        if set(dst) != set(src):
            raise RuntimeError(
                f'SlowModel {self.model.path} parameters {sorted(dst)} differ from source '
                f'{self.source.path} parameters {sorted(src)}.'
            )
