"""Layers as ninjax modules, initializers, activations and small array helpers.

Parameters are stored in float32 and cast to the compute dtype at use. The compute dtype is the
module global `COMPUTE_DTYPE`, set by `embodied.jax.setup()`; read it at call time (never import
the name), because setup may change it after this module was imported.
"""

import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ninjax as nj
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from . import conv as convlib

COMPUTE_DTYPE = jnp.bfloat16

f32 = jnp.float32
sg = jax.lax.stop_gradient


def cast(xs, force=False):
    """Cast the floating leaves of a tree (all leaves with force=True) to the compute dtype."""
    dtype = COMPUTE_DTYPE

    def fn(x):
        x = jnp.asarray(x)
        if force or jnp.issubdtype(x.dtype, jnp.floating):
            return x.astype(dtype)
        return x

    return jax.tree.map(fn, xs)


def symlog(x: Float[ArrayLike, '*shape']) -> Float[Array, '*shape']:
    """sign(x) * log(1 + |x|)."""
    return jnp.sign(x) * jnp.log1p(jnp.abs(x))


def symexp(x: Float[ArrayLike, '*shape']) -> Float[Array, '*shape']:
    """sign(x) * (exp(|x|) - 1), the inverse of symlog."""
    return jnp.sign(x) * jnp.expm1(jnp.abs(x))


def act(name):
    """Activation function by name: none, mish, relu2, swiglu, or any jax.nn function."""
    if callable(name):
        return name
    if name == 'none':
        return lambda x: x
    if name == 'mish':
        return lambda x: x * jnp.tanh(jax.nn.softplus(x))
    if name == 'relu2':
        return lambda x: jnp.square(jax.nn.relu(x))
    if name == 'swiglu':

        def swiglu(x):
            a, b = jnp.split(x, 2, -1)
            return jax.nn.silu(a) * b

        return swiglu
    fn = getattr(jax.nn, name, None)
    if not callable(fn):
        raise ValueError(
            f"Unknown activation '{name}': expected none, mish, relu2, swiglu or the name of a "
            'function in jax.nn (e.g. silu, gelu, relu).'
        )
    return fn


def where(cond, xs, ys):
    """Select between two trees with a boolean condition broadcast over trailing axes."""
    if cond.dtype != bool:
        raise TypeError(f'where() needs a bool condition, got {cond.dtype}; compare first.')

    def fn(x, y):
        if x.shape != y.shape:
            raise ValueError(f'where() branches differ in shape: {x.shape} vs {y.shape}.')
        c = jnp.expand_dims(cond, tuple(range(cond.ndim, x.ndim)))
        return jnp.where(c, x, y)

    return jax.tree.map(fn, xs, ys)


def mask(xs, m):
    """Zero the entries of a tree where the boolean mask (leading axes) is False."""
    return where(m, xs, jax.tree.map(jnp.zeros_like, xs))


def available(x, bdims):
    """Boolean mask over the first bdims axes: False where a value is marked missing.

    Missing values are -inf for floats and -1 for signed integers; unsigned and bool values are
    always available.
    """
    if jnp.issubdtype(x.dtype, jnp.floating):
        ok = x != -jnp.inf
    elif jnp.issubdtype(x.dtype, jnp.signedinteger):
        ok = x != -1
    else:
        ok = jnp.ones(x.shape, bool)
    return ok.all(tuple(range(bdims, ok.ndim)))


def rms(xs):
    """Root mean square over all elements of all leaves of a tree, in float32."""
    leaves = jax.tree.leaves(xs)
    if not leaves:
        return jnp.zeros((), f32)
    count = sum(x.size for x in leaves)
    sumsq = sum(jnp.square(x.astype(f32)).sum() for x in leaves)
    return jnp.sqrt(sumsq / count)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _grad_dtype(x, dtype, name):
    return x


def _grad_dtype_fwd(x, dtype, name):
    return x, None


def _grad_dtype_bwd(dtype, name, res, dx):
    if dx.dtype != jnp.dtype(dtype):
        raise TypeError(
            f'{name}: gradient arrives in {dx.dtype} but the compute dtype is {dtype}; some op '
            'after this layer changed the dtype. Cast outputs back with nets.cast().'
        )
    return (dx,)


_grad_dtype.defvjp(_grad_dtype_fwd, _grad_dtype_bwd)


def check_dtype(x, name):
    """Assert that x (and later its gradient) is in the compute dtype."""
    dtype = jnp.dtype(COMPUTE_DTYPE)
    if x.dtype != dtype:
        raise TypeError(
            f'{name}: input has dtype {x.dtype} but the compute dtype is {dtype.name}. '
            'Cast inputs with embodied.jax.nets.cast() before the layer.'
        )
    return _grad_dtype(x, dtype.name, name)


class Initializer:
    """Weight initializer `<dist>_<fan>` with dist zeros/uniform/normal/trunc_normal/normed."""

    DISTS = ('zeros', 'ones', 'uniform', 'normal', 'trunc_normal', 'normed')
    FANS = ('in', 'out', 'avg', 'none')

    def __init__(self, dist='trunc_normal', fan='in', scale=1.0):
        if dist not in self.DISTS:
            raise ValueError(f"Unknown initializer distribution '{dist}': use one of {self.DISTS}.")
        if fan not in self.FANS:
            raise ValueError(f"Unknown initializer fan '{fan}': use one of {self.FANS}.")
        self.dist = dist
        self.fan = fan
        self.scale = scale

    @classmethod
    def from_name(cls, name, scale=1.0):
        """Parse names like 'trunc_normal_in', 'normal_avg', 'zeros' (no fan suffix = in)."""
        if name.endswith(('_in', '_out', '_avg')):
            dist, fan = name.rsplit('_', 1)
        else:
            dist, fan = name, 'in'
        return cls(dist, fan, scale)

    @staticmethod
    def compute_fans(shape):
        """Return (fan_in, fan_out) of a kernel shape; leading dims multiply both."""
        if len(shape) == 0:
            return 1, 1
        if len(shape) == 1:
            return 1, shape[0]
        if len(shape) == 2:
            return shape[0], shape[1]
        space = math.prod(shape[:-2])
        return shape[-2] * space, shape[-1] * space

    def __call__(self, shape, dtype=f32):
        """Draw an array of the shape (uses nj.seed() for random dists)."""
        shape = (shape,) if isinstance(shape, int) else tuple(int(x) for x in shape)
        if any(x <= 0 for x in shape):
            raise ValueError(f'Initializer got shape {shape}: all dimensions must be positive.')
        fanin, fanout = self.compute_fans(shape)
        fan = {'in': fanin, 'out': fanout, 'avg': (fanin + fanout) / 2, 'none': 1}[self.fan]
        if self.dist == 'zeros':
            x = jnp.zeros(shape, f32)
        elif self.dist == 'ones':
            x = jnp.ones(shape, f32)
        elif self.dist == 'uniform':
            limit = np.sqrt(1 / fan)
            x = jax.random.uniform(nj.seed(), shape, f32, -limit, limit)
        elif self.dist == 'normal':
            x = jax.random.normal(nj.seed(), shape, f32) * np.sqrt(1 / fan)
        elif self.dist == 'trunc_normal':
            # 1.1368 undoes the std of 0.8796 that truncation to [-2, 2] leaves.
            x = jax.random.truncated_normal(nj.seed(), -2, 2, shape, f32)
            x = x * (1.1368 * np.sqrt(1 / fan))
        elif self.dist == 'normed':
            x = jax.random.uniform(nj.seed(), shape, f32, -1, 1)
            norm = jnp.linalg.norm(x.reshape((-1, shape[-1])), 2, 0)
            x = x / norm
        x = x * self.scale
        return x.astype(dtype)

    def __repr__(self):
        return f'Initializer({self.dist}, {self.fan}, {self.scale})'

    def __eq__(self, other):
        keys = ('dist', 'fan', 'scale')
        return all(getattr(self, k) == getattr(other, k, None) for k in keys)


def init(name):
    """Turn an initializer name or callable into a callable `(shape) -> array`."""
    if isinstance(name, str):
        return Initializer.from_name(name)
    if callable(name):
        return name
    raise TypeError(f'Initializer must be a name or a callable, got {name!r}.')


def _kernel_init(module, shape):
    return init(module.winit)(shape) * module.outscale


class Linear(nj.Module):
    """Dense layer y = x W + b; `units` may be a tuple, then the output is reshaped to it."""

    bias: bool = True
    winit: str | Callable = 'trunc_normal_in'
    binit: str | Callable = 'zeros'
    outscale: float | int = 1.0

    def __init__(self, units):
        self.units = (int(units),) if isinstance(units, (int, np.integer)) else tuple(units)

    def __call__(self, x):
        """Apply to the last axis of x (which must be in the compute dtype)."""
        x = check_dtype(x, self.path)
        size = math.prod(self.units)
        kernel = self.value('kernel', _kernel_init, self, (x.shape[-1], size))
        x = x @ kernel.astype(x.dtype)
        if self.bias:
            x = x + self.value('bias', init(self.binit), (size,)).astype(x.dtype)
        return x.reshape((*x.shape[:-1], *self.units))


class BlockLinear(nj.Module):
    """Block-diagonal dense layer: `blocks` independent groups, outputs concatenated by group."""

    bias: bool = True
    winit: str | Callable = 'trunc_normal_in'
    binit: str | Callable = 'zeros'
    outscale: float | int = 1.0

    def __init__(self, units, blocks):
        if units % blocks:
            raise ValueError(f'BlockLinear units={units} is not divisible by blocks={blocks}.')
        self.units = units
        self.blocks = blocks

    def __call__(self, x, parts=1):
        """Apply to the last axis of x, split into `blocks` equal groups.

        With `parts` > 1, each group's outputs are cut into that many equal pieces and returned
        as a list: piece k holds the k-th piece of every group, concatenated by group.
        """
        x = check_dtype(x, self.path)
        g, inp = self.blocks, x.shape[-1]
        if inp % g:
            raise ValueError(f'{self.path}: input width {inp} is not divisible by blocks={g}.')
        if (self.units // g) % parts:
            raise ValueError(
                f'{self.path}: {self.units // g} units per block is not divisible by parts={parts}.'
            )
        # Fan-in of this 3-D kernel is the total input width (as in the reference implementation).
        shape = (g, inp // g, self.units // g)
        kernel = self.value('kernel', _kernel_init, self, shape).astype(x.dtype)
        x = x.reshape((*x.shape[:-1], g, inp // g))
        # The group axis is the dot's batch axis, so its output is (g, ..., o); moving g back is a
        # copy of contiguous rows. jnp.einsum would put the kernel first and yield (g, o, ...),
        # whose transposed reads made the GRU gates after this layer 4x slower on CPU.
        dims = (((x.ndim - 1,), (1,)), ((x.ndim - 2,), (0,)))
        x = jax.lax.dot_general(x, kernel, dims, preferred_element_type=x.dtype)
        pieces = jnp.split(jnp.moveaxis(x, 0, -2), parts, -1)
        if self.bias:
            bias = self.value('bias', init(self.binit), (self.units,)).astype(x.dtype)
            # Each piece gets its own slice of the bias: XLA:CPU fuses a slice of a biased
            # array into the consumer as scalar code, 5x slower than adding the sliced bias.
            bias = jnp.split(bias.reshape((g, -1)), parts, -1)
            pieces = [piece + b for piece, b in zip(pieces, bias)]
        pieces = [piece.reshape((*piece.shape[:-2], -1)) for piece in pieces]
        return pieces[0] if parts == 1 else pieces


def _phase_taps(size, phase):
    """Which low-resolution offset each tap of a 'same' kernel reads for one output phase.

    After nearest-neighbour 2x upsampling, output row 2i + phase and kernel tap a read the
    upsampled row 2i + phase + a - lo, which is low-resolution row i + (phase + a - lo) // 2.
    Returns a (3, size) 0/1 matrix mapping taps to the offsets -1, 0, 1 (for size <= 5).
    """
    lo = (size - 1) // 2
    offsets = [(phase + a - lo) // 2 for a in range(size)]
    if min(offsets) < -1 or max(offsets) > 1:
        raise ValueError(f'Upsampling convolution supports kernels up to 5 wide, got {size}.')
    taps = np.zeros((3, size), np.float32)
    for a, offset in enumerate(offsets):
        taps[offset + 1, a] = 1
    return taps


def upsample_conv(x, kernel, impl='phases', grad_form='auto'):
    """Nearest-neighbour 2x upsampling of NHWC `x`, then a stride-1 'same' HWIO convolution.

    `impl='direct'` upsamples and convolves as written. `impl='phases'` computes the same
    values without the upsampled map: each of the four output phases (row and column parity)
    is a 3x3 convolution of the low-resolution input whose taps are sums of the 5x5 taps that
    read the same input pixel. All phases run as one convolution with 4x the output channels,
    then interleave; that is 36 instead of 100 multiply-adds per input-output channel pair and
    low-resolution pixel for a 5x5 kernel, on every platform. `grad_form` is the kernel
    gradient's form (`embodied.jax.conv`).
    """
    if impl == 'direct':
        x = x.repeat(2, -2).repeat(2, -3)
        return jax.lax.conv_general_dilated(
            x, kernel, (1, 1), 'SAME', dimension_numbers=convlib.DIMS
        )
    if impl != 'phases':
        raise ValueError(f"Unknown upsampling convolution '{impl}': use phases or direct.")
    kh, kw, cin, cout = kernel.shape
    rows = np.stack([_phase_taps(kh, r) for r in (0, 1)])  # (2, 3, kh)
    cols = np.stack([_phase_taps(kw, c) for c in (0, 1)])  # (2, 3, kw)
    rows, cols = jnp.asarray(rows, kernel.dtype), jnp.asarray(cols, kernel.dtype)
    # Summing taps in float32 keeps the phase kernel as exact as the compute dtype allows.
    merged = jnp.einsum('rya,cxb,abio->yxirco', rows, cols, kernel.astype(f32))
    merged = merged.reshape((3, 3, cin, 4 * cout)).astype(x.dtype)
    y = convlib.conv2d(x, merged, ((1, 1), (1, 1)), grad_form)
    N, H, W, _ = y.shape
    y = y.reshape((N, H, W, 2, 2, cout)).transpose((0, 1, 3, 2, 4, 5))
    return y.reshape((N, 2 * H, 2 * W, cout))


class Conv2D(nj.Module):
    """2-D convolution on NHWC inputs with an HWIO kernel.

    `transp` upsamples by `stride` with a fractionally strided convolution; `upsample` first
    repeats every pixel 2x2 (nearest neighbour) and is computed as in `upsample_conv`. Stride-1
    ungrouped convolutions compute their kernel gradient in the form `grad_form` names
    (`embodied.jax.conv`: 'auto' picks by platform and shape).
    """

    transp: bool = False
    upsample: bool = False
    upsample_impl: str = 'phases'
    grad_form: str = 'auto'
    groups: int = 1
    pad: str = 'same'
    bias: bool = True
    winit: str | Callable = 'trunc_normal_in'
    binit: str | Callable = 'zeros'
    outscale: float | int = 1.0

    def __init__(self, depth, kernel, stride=1):
        self.depth = depth
        self.kernel = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
        self.stride = stride

    def __call__(self, x):
        """Convolve x of shape (..., H, W, C); leading axes are treated as batch."""
        x = check_dtype(x, self.path)
        if x.shape[-1] % self.groups:
            raise ValueError(
                f'{self.path}: {x.shape[-1]} input channels not divisible by groups={self.groups}.'
            )
        bshape = x.shape[:-3]
        x = x.reshape((-1, *x.shape[-3:]))
        shape = (*self.kernel, x.shape[-1] // self.groups, self.depth)
        param = self.value('kernel', _kernel_init, self, shape)
        kernel = param.astype(x.dtype)
        if self.upsample:
            if self.pad != 'same' or self.groups != 1 or self.stride != 1 or self.transp:
                raise ValueError(
                    f"{self.path}: upsample needs pad='same', groups=1, stride=1 and no transp."
                )
            # The phase form merges taps from the float32 parameter, not from the cast copy.
            phases = self.upsample_impl == 'phases'
            x = upsample_conv(x, param if phases else kernel, self.upsample_impl, self.grad_form)
            if self.bias:
                x = x + self.value('bias', init(self.binit), (self.depth,)).astype(x.dtype)
            return x.reshape((*bshape, *x.shape[1:]))
        if self.transp:
            if self.pad != 'same':
                raise ValueError(
                    f"{self.path}: transposed Conv2D needs pad='same', got '{self.pad}'."
                )
            # Fractionally strided conv done by hand: spread the inputs onto a grid that is
            # `stride` times larger (zeros between them), then a stride-1 convolution.
            s = self.stride
            x = x.repeat(s, -2).repeat(s, -3)
            keeph = (jnp.arange(x.shape[-3]) - 1) % s == 0
            keepw = (jnp.arange(x.shape[-2]) - 1) % s == 0
            keep = (keeph[:, None] & keepw[None, :])[:, :, None]
            x = x * keep.astype(x.dtype)
            strides = (1, 1)
        else:
            strides = (self.stride, self.stride)
        x = convlib.conv2d(x, kernel, self.pad.upper(), self.grad_form, strides, self.groups)
        if self.bias:
            x = x + self.value('bias', init(self.binit), (self.depth,)).astype(x.dtype)
        return x.reshape((*bshape, *x.shape[1:]))


class Norm(nj.Module):
    """Normalisation over the last axis: 'rms', 'layer' or 'none' (suffix 1em<k>: eps=1e-k)."""

    eps: float | int = 1e-4

    def __init__(self, impl):
        self._eps = float(self.eps)
        if '1em' in impl:
            impl, exp = impl.split('1em')
            self._eps = 10.0 ** -int(exp)
        if impl not in ('rms', 'layer', 'none'):
            raise ValueError(f"Unknown norm '{impl}': use rms, layer or none.")
        self.impl = impl

    def __call__(self, x):
        """Normalise in float32 and cast back to the input dtype."""
        x = check_dtype(x, self.path)
        if self.impl == 'none':
            return x
        dtype = x.dtype
        x = x.astype(f32)
        shape = (x.shape[-1],)
        if self.impl == 'rms':
            mean2 = jnp.square(x).mean(-1, keepdims=True)
            scale = self.value('scale', jnp.ones, shape, f32)
            x = x * jax.lax.rsqrt(mean2 + self._eps) * scale
        else:
            mean = x.mean(-1, keepdims=True)
            var = jnp.square(x - mean).mean(-1, keepdims=True)
            scale = self.value('scale', jnp.ones, shape, f32)
            shift = self.value('shift', jnp.zeros, shape, f32)
            x = (x - mean) * jax.lax.rsqrt(var + self._eps) * scale + shift
        return x.astype(dtype)


class MLP(nj.Module):
    """`layers` x [Linear(units) -> Norm -> act] over the last axis (batch axes flattened)."""

    act: str = 'silu'
    norm: str = 'rms'
    bias: bool = True
    winit: str | Callable = 'trunc_normal_in'
    binit: str | Callable = 'zeros'

    def __init__(self, layers=5, units=1024):
        self.layers = layers
        self.units = units

    def __call__(self, x):
        """Apply the stack; the input is cast to the compute dtype first."""
        bshape = x.shape[:-1]
        x = cast(x).reshape((-1, x.shape[-1]))
        kw = dict(bias=self.bias, winit=self.winit, binit=self.binit)
        for i in range(self.layers):
            x = self.sub(f'linear{i}', Linear, self.units, **kw)(x)
            x = self.sub(f'norm{i}', Norm, self.norm)(x)
            x = act(self.act)(x)
        return x.reshape((*bshape, x.shape[-1]))


class DictConcat:
    """Flatten a dict of inputs (sorted keys) into one compute-dtype vector per batch element.

    Discrete entries become one-hot vectors, continuous ones go through `squish`. The first
    `fdims - 1` axes after the batch axes are kept; the rest are flattened. Entries marked
    missing (-inf floats, -1 signed ints) are zeroed.
    """

    def __init__(self, spaces, fdims, squish=lambda x: x):
        if fdims < 1:
            raise ValueError(f'DictConcat fdims={fdims}: must be at least 1.')
        self.keys = sorted(spaces.keys())
        self.spaces = spaces
        self.fdims = fdims
        self.squish = squish

    def __call__(self, xs):
        """Concatenate the entries of xs along the last axis."""
        missing = [k for k in self.keys if k not in xs]
        if missing:
            raise KeyError(f'DictConcat inputs lack keys {missing}; got {sorted(xs)}.')
        first = self.keys[0]
        bdims = xs[first].ndim - len(self.spaces[first].shape)
        ys = []
        for key in self.keys:
            space, x = self.spaces[key], xs[key]
            if x.shape[bdims:] != space.shape:
                raise ValueError(
                    f"DictConcat key '{key}': shape {x.shape} does not end in the space shape "
                    f'{space.shape} (batch dims {bdims}).'
                )
            if space.dtype == np.uint8 and len(space.shape) in (2, 3):
                raise NotImplementedError(f"DictConcat key '{key}': images are not supported.")
            m = available(x, bdims)
            x = mask(x, m)
            if space.discrete:
                classes = np.asarray(space.classes).flatten()
                if not (classes == classes[0]).all():
                    raise ValueError(f"DictConcat key '{key}': unequal class counts {classes}.")
                x = jax.nn.one_hot(x.astype(jnp.int32), int(classes[0]), dtype=COMPUTE_DTYPE)
            else:
                x = self.squish(x).astype(COMPUTE_DTYPE)
            x = mask(x, m)
            x = x.reshape((*x.shape[: bdims + self.fdims - 1], -1))
            ys.append(x)
        return jnp.concatenate(ys, -1)
