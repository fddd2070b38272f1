"""The optimiser: an optax chain and a ninjax module that applies it.

Update rule per parameter tensor: adaptive gradient clipping -> RMS scaling -> momentum on the
normalised update -> optional decoupled weight decay on kernels -> learning-rate schedule.
With `momentum=False` the momentum transform is left out, which equals beta1 = 0. The RMS
scaling and the moment helpers are optax's; the clipping is written here because optax's
`adaptive_grad_clip` clips per unit (row of a kernel), while this rule clips per tensor.
"""

import math
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ninjax as nj
import optax
from jaxtyping import Array

from . import nets, utils

f32 = jnp.float32
i32 = jnp.int32
sg = jax.lax.stop_gradient

SCALE_INIT = 1e4
SCALE_MIN, SCALE_MAX = 1e-4, 1e5
SCALE_PATIENCE = 1000
MAX_SKIPS = 1000

# The moment helpers live in optax.tree_utils in every optax release this project supports.
_update_moment = optax.tree_utils.tree_update_moment
_bias_correction = optax.tree_utils.tree_bias_correction


def clip_by_agc(clip: float = 0.3, pmin: float = 1e-3) -> optax.GradientTransformation:
    """Scale each gradient tensor so that its norm is at most clip * max(pmin, param norm)."""

    # Per tensor on purpose: optax.adaptive_grad_clip takes norms per output unit instead.

    def init_fn(params):
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        if not clip:
            return updates, state
        if params is None:
            raise ValueError('clip_by_agc needs the parameters: pass params to update().')

        def fn(update, param):
            unorm = jnp.linalg.norm(update.astype(f32).ravel())
            pnorm = jnp.linalg.norm(param.astype(f32).ravel())
            upper = clip * jnp.maximum(pmin, pnorm)
            return update * (1 / jnp.maximum(1.0, unorm / upper)).astype(update.dtype)

        return jax.tree.map(fn, updates, params), state

    return optax.GradientTransformation(init_fn, update_fn)


def scale_by_rms(beta: float = 0.999, eps: float = 1e-20) -> optax.GradientTransformation:
    """Divide by the root of a debiased EMA of squared gradients, eps outside the root."""
    return optax.scale_by_rms(beta, eps, eps_in_sqrt=False, bias_correction=True)


class MomentumState(NamedTuple):
    """Update count and the EMA of the incoming updates."""

    count: jax.Array
    mu: optax.Updates


def scale_by_momentum(beta: float = 0.9, nesterov: bool = False) -> optax.GradientTransformation:
    """Debiased EMA of the incoming updates (optionally with a Nesterov look-ahead)."""

    def init_fn(params):
        mu = jax.tree.map(lambda x: jnp.zeros(x.shape, f32), params)
        return MomentumState(jnp.zeros((), i32), mu)

    def update_fn(updates, state, params=None):
        count = optax.safe_int32_increment(state.count)
        mu = _update_moment(updates, state.mu, beta, 1)
        if nesterov:
            # Look ahead one step: the next moment if the same update arrived again.
            out = jax.tree.map(
                lambda m, u: beta * m + (1 - beta) * u,
                _bias_correction(mu, beta, optax.safe_int32_increment(count)),
                _bias_correction(updates, beta, count),
            )
        else:
            out = _bias_correction(mu, beta, count)
        return out, MomentumState(count, mu)

    return optax.GradientTransformation(init_fn, update_fn)


def add_decayed_weights(wd: float, regex: str = r'/kernel$') -> optax.GradientTransformation:
    """Add wd * param to the update of every parameter whose name matches regex (re.search)."""
    pattern = re.compile(regex)
    mask = lambda params: {k: bool(pattern.search(k)) for k in params}
    return optax.add_decayed_weights(wd, mask)


def make_schedule(
    lr: float, schedule: str = 'const', warmup: int = 0, anneal: int = 0
) -> optax.Schedule:
    """Learning rate as a function of the number of previous updates."""
    lr, warmup, anneal = float(lr), int(warmup), int(anneal)
    if schedule == 'const':
        sched = optax.constant_schedule(lr)
    elif schedule in ('linear', 'cosine'):
        if anneal <= warmup:
            raise ValueError(
                f"Schedule '{schedule}' needs anneal > warmup (got anneal={anneal}, "
                f'warmup={warmup}): set opt.anneal to the total number of updates.'
            )
        if schedule == 'linear':
            sched = optax.linear_schedule(lr, 0.1 * lr, anneal - warmup)
        else:
            # alpha is the final fraction: the cosine ends at 0.1 * lr, as the linear one does.
            sched = optax.cosine_decay_schedule(lr, anneal - warmup, alpha=0.1)
    else:
        raise ValueError(f"Unknown schedule '{schedule}': use const, linear or cosine.")
    if warmup:
        ramp = optax.linear_schedule(0.0, lr, warmup)
        sched = optax.join_schedules([ramp, sched], [warmup])
    return sched


def make_chain(
    lr: float = 4e-5,
    agc: float = 0.3,
    eps: float = 1e-20,
    beta1: float = 0.9,
    beta2: float = 0.999,
    momentum: bool = True,
    wd: float = 0.0,
    schedule: str = 'const',
    warmup: int = 1000,
    anneal: int = 0,
    nesterov: bool = False,
    wdregex: str = r'/kernel$',
) -> optax.GradientTransformation:
    """The optimiser chain described at the top of this module (config keys of `agent.opt`)."""
    chain = [
        clip_by_agc(float(agc)),
        scale_by_rms(float(beta2), float(eps)),
    ]
    if momentum:
        chain.append(scale_by_momentum(float(beta1), nesterov))
    if wd:
        chain.append(add_decayed_weights(float(wd), wdregex))
    chain.append(optax.scale_by_learning_rate(make_schedule(lr, schedule, warmup, anneal)))
    return optax.chain(*chain)


def summarize(counts: dict[str, int], depth: int = 1, name: str = 'opt') -> str:
    """Text table of parameter counts grouped by name prefixes up to `depth` components."""
    groups = {}
    for key, count in counts.items():
        parts = key.split('/')
        for i in range(min(len(parts), depth)):
            prefix = '/'.join(parts[: i + 1])
            groups[prefix] = groups.get(prefix, 0) + count
    lines = [f'Optimizer {name} has {sum(counts.values()):,} parameters:']
    for prefix, count in sorted(groups.items(), key=lambda x: (-x[1], x[0])):
        lines.append(f'{count:>14,} {prefix}')
    return '\n'.join(lines)


def trainable_params(modules: Sequence[nj.Module], context: dict | None = None) -> dict:
    """The float entries of the ninjax context under the paths of `modules` (name -> array)."""
    context = nj.context() if context is None else context
    prefixes = tuple(m.path + '/' for m in modules)
    params = {
        k: v
        for k, v in context.items()
        if k.startswith(prefixes) and jnp.issubdtype(v.dtype, jnp.floating)
    }
    if not params:
        paths = [m.path for m in modules]
        raise RuntimeError(
            f'Modules {paths} have no float parameters; the loss function must use them '
            'before the optimizer can train them.'
        )
    return params


# Checkpoints of earlier versions stored each transform state of the chain as a plain tuple
# (count, moment), so its entries were named `.../state/<i>/0` and `.../state/<i>/1/<param>`;
# optax's named states give `.../state/<i>/count` and `.../state/<i>/nu|mu/<param>`.
_TUPLE_STATE = re.compile(r'^(?P<head>.*/state(?:/.*)?/\d+)/(?P<field>[01])(?P<rest>/.*)?$')


def upgrade_state_keys(params: dict, expected: Iterable[str]) -> dict:
    """Rename optimizer-state entries of older checkpoints to the names `expected` holds."""
    expected = set(expected)
    upgraded = {}
    for key, value in params.items():
        match = None if key in expected else _TUPLE_STATE.match(key)
        if match:
            head, rest = match['head'], match['rest'] or ''
            fields = ('count',) if match['field'] == '0' and not rest else ('nu', 'mu')
            names = [f'{head}/{field}{rest}' for field in fields]
            found = [name for name in names if name in expected]
            key = found[0] if len(found) == 1 else key
        upgraded[key] = value
    return upgraded


class Optimizer(nj.Module):
    """Computes gradients of a scalar float32 loss w.r.t. the float parameters of `modules`
    and applies an optax chain.

    State entries: `<name>/state/...` (the chain state) and `<name>/step/value` (number of
    applied updates). With compute dtype float16 the loss is scaled dynamically, non-finite
    steps are skipped (chain wrapped in optax.apply_if_finite), and the scale is halved on
    overflow and doubled after 1000 good steps. While creating parameters (nj.init), no
    gradient is computed: the chain state is initialised with zero gradients instead.
    """

    summary_depth: int = 1

    def __init__(
        self, modules: nj.Module | Sequence[nj.Module], chain: optax.GradientTransformation
    ):
        self.modules = list(modules) if isinstance(modules, (list, tuple)) else [modules]
        self.chain = chain
        self.step = nj.Variable(jnp.array, 0, i32, name='step')
        self.scaling = jnp.dtype(nets.COMPUTE_DTYPE) == jnp.float16
        if self.scaling:
            self.chain = optax.apply_if_finite(chain, max_consecutive_errors=MAX_SKIPS)
            self.grad_scale = nj.Variable(jnp.array, SCALE_INIT, f32, name='grad_scale')
            self.good_steps = nj.Variable(jnp.array, 0, i32, name='good_steps')

    def __call__(
        self, lossfn: Callable, *args: Any, has_aux: bool = False, **kwargs: Any
    ) -> dict[str, Array] | tuple[dict[str, Array], Any]:
        """Take one optimiser step; returns metrics (and the loss function's aux)."""

        def scaled(*args, **kwargs):
            out = lossfn(*args, **kwargs)
            loss, aux = out if has_aux else (out, None)
            if loss.dtype != f32 or loss.shape != ():
                raise TypeError(
                    f'{self.path}: the loss must be a float32 scalar, got {loss.dtype} with '
                    f'shape {loss.shape}; reduce it with .mean() and cast outputs to float32.'
                )
            if self.scaling:
                loss = loss * sg(self.grad_scale.read())
            return loss, aux

        if nj.creating():
            loss, aux = scaled(*args, **kwargs)
            params = trainable_params(self.modules)
            grads = jax.tree.map(jnp.zeros_like, params)
        else:
            targets = [re.escape(k) for k in trainable_params(self.modules)]
            loss, params, grads, aux = nj.grad(scaled, targets, has_aux=True)(*args, **kwargs)
        counts = {k: math.prod(v.shape) for k, v in params.items()}
        if nj.creating():
            print(summarize(counts, self.summary_depth, self.name))

        axes = utils.data_axes()
        if axes:
            grads = jax.tree.map(lambda g: jax.lax.pmean(g, axes), grads)
        if self.scaling:
            inv = 1 / self.grad_scale.read()
            loss = loss * inv
            grads = jax.tree.map(lambda g: g * inv, grads)

        state = self.sub('state', nj.Tree, self.chain.init, params)
        updates, new_state = self.chain.update(grads, state.read(), params)
        new_params = optax.apply_updates(params, updates)
        nj.context().update(new_params)
        state.write(new_state)

        metrics = {}
        grad_norm = optax.global_norm(grads)
        if self.scaling:
            finite = jnp.isfinite(grad_norm)
            self._update_scale(finite)
            grad_norm = jnp.where(finite, grad_norm, jnp.nan)
            self.step.write(self.step.read() + finite.astype(i32))
            metrics['grad_scale'] = self.grad_scale.read()
            metrics['grad_overflow'] = (~finite).astype(f32)
        else:
            self.step.write(self.step.read() + 1)
        metrics['loss'] = loss
        metrics['updates'] = self.step.read()
        metrics['grad_norm'] = grad_norm
        metrics['grad_rms'] = nets.rms(grads)
        metrics['update_rms'] = nets.rms(updates)
        metrics['param_rms'] = nets.rms(new_params)
        metrics['param_count'] = jnp.asarray(sum(counts.values()), f32)
        metrics = {f'{self.name}/{k}': v for k, v in metrics.items()}
        return (metrics, aux) if has_aux else metrics

    def _update_scale(self, finite):
        good = self.good_steps.read()
        keep = finite & (good < SCALE_PATIENCE)
        grow = finite & (good >= SCALE_PATIENCE)
        scale = self.grad_scale.read()
        scale = jnp.where(grow, 2 * scale, jnp.where(keep, scale, scale / 2))
        self.grad_scale.write(jnp.clip(scale, SCALE_MIN, SCALE_MAX))
        self.good_steps.write(jnp.where(keep, good + 1, 0))
