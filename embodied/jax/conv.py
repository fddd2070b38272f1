"""Stride-1 2-D convolution whose kernel gradient is computed in the form fastest on the platform.

XLA:CPU computes the kernel gradient of a convolution with few channels and a large batch
(the image encoder's and decoder's layers: 3 to 16 channels, 1024 images of 64x64 to 4x4) up
to 15x slower than the forward pass. The same gradient written as one contraction per kernel
tap, over the input shifted by that tap ('taps'), is faster there on maps of 16x16 and more
with 8 or more input channels, and slower on smaller maps and on the 3-channel image itself.
Measured on a 2-core CPU, input and kernel gradient together, batch 1024, float32:

    map    kernel  channels   XLA       taps
    64x64  5x5     3 -> 8     1187 ms   1636 ms
    32x32  5x5     8 -> 12    2598 ms   1084 ms
    32x32  3x3     8 -> 12    1079 ms    596 ms
    16x16  3x3    12 -> 32     575 ms    346 ms
    16x16  5x5    12 -> 16     433 ms    470 ms
     8x8   5x5    16 -> 16      41 ms    123 ms

GPUs compute the kernel gradient well in one cuDNN call, so 'auto' picks the tap form on CPU
only, for the shapes where it was faster. Both forms compute the same sums in another order.
The tap form computes the input gradient as a forward convolution of the output gradient with
the flipped kernel, the same sums as XLA's transposed convolution.

Inside the body of a loop (`lax.scan`, `lax.fori_loop`) XLA:CPU computes both gradients of a
convolution far slower than at the top level of a program, while the tap form's contractions
and forward convolutions keep their speed there. Measured on a 2-core CPU, batch 256, 5x5
kernel, float32, the same gradient at the top level and in a one-step `fori_loop`:

    map    channels   kernel gradient (XLA)   input gradient (XLA)   tap form, both
    64x64   3 -> 8     429 -> 9523 ms          165 -> 643 ms          unchanged
    32x32   8 -> 12    510 -> 5598 ms           72 -> 657 ms          unchanged
     8x8   16 -> 16      9 ->  502 ms            5 -> 122 ms          unchanged

A program that trains inside a loop (the device loop) traces the model under `in_loop()`,
which makes 'auto' pick the tap form on CPU for every stride-1 ungrouped convolution.
"""

import contextlib
import contextvars
import functools

import jax
import jax.numpy as jnp

DIMS = ('NHWC', 'HWIO', 'NHWC')
FORMS = ('auto', 'xla', 'taps')
# Where 'auto' uses the tap form on CPU: maps of at least 16x16 with at least 8 channels.
MIN_TAPS_PIXELS = 16 * 16
MIN_TAPS_CHANNELS = 8
_IN_LOOP = contextvars.ContextVar('in_loop', default=False)


@contextlib.contextmanager
def in_loop():
    """Trace convolutions as the body of a loop: 'auto' then picks the tap form on CPU."""
    token = _IN_LOOP.set(True)
    try:
        yield
    finally:
        _IN_LOOP.reset(token)


def kernel_grad_form(form: str, shape: tuple, strides=(1, 1), groups: int = 1) -> str:
    """'taps' or 'xla' for an NHWC input of `shape`; 'auto' picks by platform and shape.

    The tap form covers stride-1 ungrouped convolutions; others always use XLA's form.
    """
    if form not in FORMS:
        raise ValueError(f"Unknown kernel gradient form '{form}': use {', '.join(FORMS)}.")
    if tuple(strides) != (1, 1) or groups != 1:
        return 'xla'
    if form != 'auto':
        return form
    if jax.default_backend() != 'cpu':
        return 'xla'
    _, height, width, channels = shape
    wins = height * width >= MIN_TAPS_PIXELS and channels >= MIN_TAPS_CHANNELS
    return 'taps' if wins or _IN_LOOP.get() else 'xla'


def conv2d(
    x: jax.Array, kernel: jax.Array, padding, form: str = 'auto', strides=(1, 1), groups: int = 1
) -> jax.Array:
    """Convolution of NHWC `x` with an HWIO kernel; padding 'SAME', 'VALID' or pairs."""
    strides = tuple(strides)
    if isinstance(padding, str):
        padding = jax.lax.padtype_to_pads(x.shape[1:3], kernel.shape[:2], strides, padding)
    padding = tuple((int(lo), int(hi)) for lo, hi in padding)
    if kernel_grad_form(form, x.shape, strides, groups) == 'xla':
        return jax.lax.conv_general_dilated(
            x, kernel, strides, padding, feature_group_count=groups, dimension_numbers=DIMS
        )
    return _conv_taps(x, kernel, padding)


def _conv(x, kernel, padding):
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), padding, dimension_numbers=DIMS)


def kernel_grad_taps(x: jax.Array, grad: jax.Array, size: tuple, padding) -> jax.Array:
    """The float32 kernel gradient of a `size` kernel for output gradient `grad`, tap by tap."""
    kh, kw = size
    (top, bottom), (left, right) = padding
    padded = jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    H, W = grad.shape[1:3]
    # Accumulating in float32 keeps the sums over the batch and the pixels as exact as XLA's.
    taps = [
        [
            jnp.einsum(
                'bhwi,bhwo->io',
                padded[:, i : i + H, j : j + W],
                grad,
                preferred_element_type=jnp.float32,
            )
            for j in range(kw)
        ]
        for i in range(kh)
    ]
    return jnp.stack([jnp.stack(row) for row in taps])


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv_taps(x, kernel, padding):
    return _conv(x, kernel, padding)


def _conv_taps_fwd(x, kernel, padding):
    return _conv(x, kernel, padding), (x, kernel)


def _conv_taps_bwd(padding, residuals, grad):
    x, kernel = residuals
    (kh, kw) = kernel.shape[:2]
    (top, bottom), (left, right) = padding
    flipped = jnp.flip(kernel, (0, 1)).swapaxes(2, 3)
    dx = _conv(grad, flipped, ((kh - 1 - top, kh - 1 - bottom), (kw - 1 - left, kw - 1 - right)))
    dk = kernel_grad_taps(x, grad, kernel.shape[:2], padding).astype(kernel.dtype)
    return dx, dk


_conv_taps.defvjp(_conv_taps_fwd, _conv_taps_bwd)
