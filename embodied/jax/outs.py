"""Output distributions returned by heads: prediction, loss, sampling, log-prob, entropy, KL.

Every output converts its parameters to float32, so losses are float32 whatever the compute
dtype of the network that produced them.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from . import nets

# Shapes in the annotations: `*batch` is the batch shape of an output, `...` any shape.
Values = Float[Array, '...']

f32 = jnp.float32
i32 = jnp.int32
sg = jax.lax.stop_gradient


class Output:
    """Base class: `loss(target)` defaults to the negative log-probability of the target."""

    def __repr__(self):
        pred = self.pred()
        return f'{type(self).__name__}({pred.dtype}, shape={pred.shape})'

    def pred(self) -> Array:
        """Point prediction (mode or mean)."""
        raise NotImplementedError(f'{type(self).__name__} has no pred().')

    def loss(self, target: Array) -> Values:
        """Per-element training loss against a target (gradient stopped on the target)."""
        return -self.logp(sg(target))

    def sample(self, seed: Array, shape: tuple[int, ...] = ()) -> Array:
        """Draw samples with a PRNG key; `shape` is prepended to the batch shape."""
        raise NotImplementedError(f'{type(self).__name__} has no sample().')

    def logp(self, event: Array) -> Values:
        """Log-probability (or log-density) of an event."""
        raise NotImplementedError(f'{type(self).__name__} has no logp().')

    def prob(self, event: Array) -> Values:
        """Probability (or density) of an event."""
        return jnp.exp(self.logp(event))

    def entropy(self) -> Values:
        """Entropy per batch element."""
        raise NotImplementedError(f'{type(self).__name__} has no entropy().')

    def kl(self, other: 'Output') -> Values:
        """KL(self || other)."""
        raise NotImplementedError(f'{type(self).__name__} has no kl().')


class Agg(Output):
    """Aggregate (default: sum) loss, logp, entropy and KL over the last `dims` axes.

    `pred` and `sample` pass through. Entropy bounds `minent`/`maxent` of the inner output are
    forwarded, aggregated over the same axes (so a per-dimension bound becomes a bound on the
    summed entropy).
    """

    def __init__(self, output: Output, dims: int, agg: Callable = jnp.sum):
        self.output = output
        self.axes = tuple(-i for i in range(1, dims + 1))
        self.agg = agg

    def __repr__(self):
        pred = self.pred()
        name = type(self.output).__name__
        return f'{name}({pred.dtype}, shape={pred.shape}, agg={len(self.axes)})'

    def __getattr__(self, name):
        if name in ('minent', 'maxent') and 'output' in self.__dict__:
            bound = getattr(self.output, name)
            shape = jax.eval_shape(self.output.entropy).shape
            bound = jnp.broadcast_to(jnp.asarray(bound, f32), shape)
            return self.agg(bound, self.axes)
        raise AttributeError(name)

    def pred(self) -> Array:
        """Prediction of the inner output."""
        return self.output.pred()

    def loss(self, target: Array) -> Values:
        """Aggregated inner loss."""
        return self.agg(self.output.loss(target), self.axes)

    def sample(self, seed: Array, shape: tuple[int, ...] = ()) -> Array:
        """Sample of the inner output."""
        return self.output.sample(seed, shape)

    def logp(self, event: Array) -> Values:
        """Aggregated inner log-probability."""
        return self.agg(self.output.logp(event), self.axes)

    def entropy(self) -> Values:
        """Aggregated inner entropy."""
        return self.agg(self.output.entropy(), self.axes)

    def kl(self, other: 'Output') -> Values:
        """Aggregated inner KL; the other output must be an Agg as well."""
        if not isinstance(other, Agg):
            raise TypeError(f'Agg.kl needs another Agg, got {type(other).__name__}.')
        return self.agg(self.output.kl(other.output), self.axes)


class MSE(Output):
    """Squared error against `squash(target)`; pred() is the mean as is (no unsquash)."""

    def __init__(self, mean: ArrayLike, squash: Callable | None = None):
        self.mean = jnp.asarray(mean).astype(f32)
        self.squash = squash or (lambda x: x)

    def pred(self) -> Array:
        """The predicted mean (in squashed space when a squash is used)."""
        return self.mean

    def loss(self, target: Array) -> Values:
        """(mean - squash(target))^2 element-wise."""
        _check_target(target, self.mean.shape, 'MSE')
        return jnp.square(self.mean - sg(self.squash(target.astype(f32))))


class Huber(Output):
    """Charbonnier loss sqrt(d^2 + eps^2) - eps."""

    def __init__(self, mean: ArrayLike, eps: float = 1.0):
        self.mean = jnp.asarray(mean).astype(f32)
        self.eps = eps

    def pred(self) -> Array:
        """The predicted mean."""
        return self.mean

    def loss(self, target: Array) -> Values:
        """Smooth absolute error."""
        _check_target(target, self.mean.shape, 'Huber')
        dist = self.mean - sg(target.astype(f32))
        return jnp.sqrt(jnp.square(dist) + self.eps**2) - self.eps


class Normal(Output):
    """Diagonal Gaussian."""

    def __init__(self, mean: ArrayLike, stddev: ArrayLike = 1.0):
        self.mean = jnp.asarray(mean).astype(f32)
        self.stddev = jnp.broadcast_to(jnp.asarray(stddev).astype(f32), self.mean.shape)

    def pred(self) -> Array:
        """The mean."""
        return self.mean

    def sample(self, seed: Array, shape: tuple[int, ...] = ()) -> Array:
        """mean + stddev * eps."""
        eps = jax.random.normal(seed, tuple(shape) + self.mean.shape, f32)
        return self.mean + self.stddev * eps

    def logp(self, event: Array) -> Values:
        """Gaussian log-density."""
        if not jnp.issubdtype(event.dtype, jnp.floating):
            raise TypeError(f'Normal.logp needs a float event, got {event.dtype}.')
        z = (event.astype(f32) - self.mean) / self.stddev
        return -0.5 * jnp.square(z) - jnp.log(self.stddev) - 0.5 * np.log(2 * np.pi)

    def entropy(self) -> Values:
        """0.5 ln(2 pi std^2) + 0.5."""
        return jnp.log(self.stddev) + 0.5 * np.log(2 * np.pi) + 0.5

    def kl(self, other: 'Output') -> Values:
        """Closed-form KL between Gaussians."""
        ratio = jnp.square(self.stddev / other.stddev)
        diff = jnp.square((other.mean - self.mean) / other.stddev)
        return 0.5 * (ratio + diff - 1) - jnp.log(self.stddev / other.stddev)


class Binary(Output):
    """Bernoulli with a logit; events are floats in [0, 1] (or bools)."""

    def __init__(self, logit: ArrayLike):
        self.logit = jnp.asarray(logit).astype(f32)

    def pred(self) -> Array:
        """True where the logit is positive."""
        return self.logit > 0

    def logp(self, event: Array) -> Values:
        """y log sigmoid(l) + (1 - y) log sigmoid(-l)."""
        event = jnp.asarray(event).astype(f32)
        return event * jax.nn.log_sigmoid(self.logit) + (1 - event) * jax.nn.log_sigmoid(
            -self.logit
        )

    def sample(self, seed: Array, shape: tuple[int, ...] = ()) -> Array:
        """Bernoulli draw (bool)."""
        prob = jax.nn.sigmoid(self.logit)
        return jax.random.bernoulli(seed, prob, tuple(shape) + self.logit.shape)

    def entropy(self) -> Values:
        """Bernoulli entropy."""
        p = jax.nn.sigmoid(self.logit)
        return -(p * jax.nn.log_sigmoid(self.logit) + (1 - p) * jax.nn.log_sigmoid(-self.logit))

    def kl(self, other: 'Output') -> Values:
        """KL between Bernoullis."""
        p = jax.nn.sigmoid(self.logit)
        lp, lq = jax.nn.log_sigmoid(self.logit), jax.nn.log_sigmoid(other.logit)
        lnp, lnq = jax.nn.log_sigmoid(-self.logit), jax.nn.log_sigmoid(-other.logit)
        return p * (lp - lq) + (1 - p) * (lnp - lnq)


def _unimix(logits, unimix):
    if not unimix:
        return logits
    probs = jax.nn.softmax(logits, -1)
    probs = (1 - unimix) * probs + unimix / probs.shape[-1]
    return jnp.log(probs)


class Categorical(Output):
    """Categorical over the last axis; events are integer indices."""

    def __init__(self, logits: Float[ArrayLike, '*batch classes'], unimix: float = 0.0):
        self.logits = _unimix(jnp.asarray(logits).astype(f32), unimix)

    def pred(self) -> Array:
        """Most likely index."""
        return jnp.argmax(self.logits, -1)

    def sample(self, seed: Array, shape: tuple[int, ...] = ()) -> Array:
        """Random index."""
        return jax.random.categorical(seed, self.logits, -1, tuple(shape) + self.logits.shape[:-1])

    def logp(self, event: Array) -> Values:
        """log_softmax at the event index."""
        logprob = jax.nn.log_softmax(self.logits, -1)
        index = jnp.asarray(event).astype(i32)[..., None]
        return jnp.take_along_axis(logprob, index, -1)[..., 0]

    def entropy(self) -> Values:
        """-sum p log p."""
        logprob = jax.nn.log_softmax(self.logits, -1)
        return -(jnp.exp(logprob) * logprob).sum(-1)

    def kl(self, other: 'Output') -> Values:
        """sum p (log p - log q)."""
        logp = jax.nn.log_softmax(self.logits, -1)
        logq = jax.nn.log_softmax(other.logits, -1)
        return (jnp.exp(logp) * (logp - logq)).sum(-1)


class OneHot(Output):
    """Categorical whose events are one-hot vectors; pred/sample pass straight-through grads."""

    def __init__(self, logits: Float[ArrayLike, '*batch classes'], unimix: float = 0.0):
        self.dist = Categorical(logits, unimix)

    @property
    def logits(self) -> Float[Array, '*batch classes']:
        """Logits after the uniform mixture."""
        return self.dist.logits

    def pred(self) -> Array:
        """One-hot mode with straight-through gradient."""
        return self._straight_through(self.dist.pred())

    def sample(self, seed: Array, shape: tuple[int, ...] = ()) -> Array:
        """One-hot sample with straight-through gradient."""
        return self._straight_through(self.dist.sample(seed, shape))

    def logp(self, event: Array) -> Values:
        """sum x log_softmax."""
        return (jax.nn.log_softmax(self.dist.logits, -1) * event.astype(f32)).sum(-1)

    def entropy(self) -> Values:
        """Categorical entropy."""
        return self.dist.entropy()

    def kl(self, other: 'Output') -> Values:
        """Categorical KL."""
        return self.dist.kl(other.dist)

    def _straight_through(self, index):
        value = jax.nn.one_hot(index, self.dist.logits.shape[-1], dtype=f32)
        return straight_through(value, self.dist.logits)


@jax.custom_jvp
def straight_through(value: Array, logits: Array) -> Array:
    """`value` forward, with the derivative of softmax(logits) as its derivative.

    Equals sg(value) + (probs - sg(probs)) in value and gradient, but computes the softmax only
    when differentiated: the imagined rollouts sample without needing it.
    """
    return value


@straight_through.defjvp
def _straight_through_jvp(primals, tangents):
    value, logits = primals
    _, dlogits = tangents
    _, dprobs = jax.jvp(lambda x: jax.nn.softmax(x, -1), (logits,), (dlogits,))
    return value, jnp.broadcast_to(dprobs, value.shape)


def symexp_bins(n: int) -> Float[Array, ' n']:
    """n float32 bins spaced uniformly in symlog space over [-20, 20] (exact 0 for odd n)."""
    if n < 2:
        raise ValueError(f'TwoHot needs at least 2 bins, got {n}.')
    # Evaluated while tracing (a deliberate transfer of a few constants), so compiled programs
    # hold the bins as a constant. Computed inside them, XLA:CPU wrote the bins broadcast to the
    # full (batch, bins) shape on every step.
    with jax.ensure_compile_time_eval(), jax.transfer_guard('allow'):
        if n % 2 == 1:
            half = nets.symexp(jnp.linspace(-20, 0, (n - 1) // 2 + 1, dtype=f32))
            return jnp.concatenate([half, -half[:-1][::-1]], 0)
        half = nets.symexp(jnp.linspace(-20, 0, n // 2, dtype=f32))
        return jnp.concatenate([half, -half[::-1]], 0)


def twohot(x: Float[Array, '*batch'], bins: Float[Array, ' bins']) -> Float[Array, '*batch bins']:
    """Two-hot encoding of float32 values x over sorted bins, interpolating in raw space."""
    n = bins.shape[0]
    x = x[..., None]
    below = (bins <= x).astype(i32).sum(-1) - 1
    above = n - (bins > x).astype(i32).sum(-1)
    below = jnp.clip(below, 0, n - 1)
    above = jnp.clip(above, 0, n - 1)
    equal = below == above
    x = x[..., 0]
    dbelow = jnp.where(equal, 1, jnp.abs(bins[below] - x))
    dabove = jnp.where(equal, 1, jnp.abs(bins[above] - x))
    total = dbelow + dabove
    wbelow = dabove / total
    wabove = dbelow / total
    return (
        jax.nn.one_hot(below, n, dtype=f32) * wbelow[..., None]
        + jax.nn.one_hot(above, n, dtype=f32) * wabove[..., None]
    )


class TwoHot(Output):
    """Discrete regression over fixed bins: two-hot cross-entropy loss, expectation pred."""

    def __init__(self, logits: Float[ArrayLike, '*batch bins'], bins: Float[ArrayLike, ' bins']):
        self.logits = jnp.asarray(logits).astype(f32)
        self.bins = jnp.asarray(bins).astype(f32)
        if self.logits.shape[-1] != self.bins.shape[0]:
            raise ValueError(
                f'TwoHot logits have {self.logits.shape[-1]} classes but there are '
                f'{self.bins.shape[0]} bins.'
            )
        self.probs = jax.nn.softmax(self.logits, -1)

    def pred(self) -> Array:
        """Expected value; for bins symmetric about 0, uniform probabilities give exactly 0."""
        m = self.bins.shape[0] // 2
        if _mirrored(self.bins):
            # Pairs of mirrored bins share one weight, so the sum reads
            # b_i * (p_i - p_mirror(i)): equal probabilities cancel before any rounding, in
            # any summation order. As a dot it also runs as a matrix product, where the
            # multiply-and-reduce form was a slow elementwise fusion on XLA:CPU.
            right = self.probs[..., -m:] - self.probs[..., :m][..., ::-1]
            return right @ self.bins[-m:]
        return self.probs @ self.bins

    def logp(self, event: Array) -> Values:
        """sum twohot(event) * log_softmax(logits)."""
        if event.dtype != f32:
            raise TypeError(f'TwoHot targets must be float32, got {event.dtype}.')
        target = twohot(event, self.bins)
        return (target * jax.nn.log_softmax(self.logits, -1)).sum(-1)

    def entropy(self) -> Values:
        """Entropy of the bin distribution."""
        logprob = jax.nn.log_softmax(self.logits, -1)
        return -(self.probs * logprob).sum(-1)


def _mirrored(bins: Array) -> bool:
    """Whether concrete bins are odd about 0 (b[i] == -b[n-1-i], a zero middle bin if n is odd)."""
    if isinstance(bins, jax.core.Tracer):
        return False
    # A read of a few constants while tracing, not a transfer inside the step.
    with jax.transfer_guard('allow'):
        bins = np.asarray(bins)
    m = bins.shape[0] // 2
    middle_zero = bins.shape[0] % 2 == 0 or bins[m] == 0
    return bool(middle_zero and np.array_equal(bins[:m][::-1], -bins[-m:]))


def _check_target(target, shape, name):
    if not jnp.issubdtype(target.dtype, jnp.floating):
        raise TypeError(f'{name} target must be a float array, got {target.dtype}.')
    if target.shape != shape:
        raise ValueError(f'{name} target shape {target.shape} differs from prediction {shape}.')
