"""The tap form of the kernel gradient equals XLA's, and 'auto' picks it where it is faster."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from embodied.jax import conv

pytestmark = pytest.mark.pinned


def grads(form, x, kernel, padding):
    def loss(x, kernel):
        y = conv.conv2d(x, kernel, padding, form)
        return (y.astype(jnp.float32) * weights(y.shape)).sum()

    return jax.jit(jax.value_and_grad(loss, (0, 1)))(x, kernel)


def weights(shape):
    # Distinct output weights, so that every kernel tap gets its own gradient.
    return jnp.asarray(np.random.default_rng(1).normal(size=shape), jnp.float32)


@pytest.mark.parametrize(
    'hw, kernel, cin, cout, padding',
    [
        ((8, 8), 5, 3, 4, 'SAME'),
        ((6, 10), 3, 8, 5, 'SAME'),
        ((9, 7), 4, 2, 3, 'SAME'),
        ((8, 8), 3, 4, 6, 'VALID'),
        ((5, 5), 3, 4, 4, ((1, 1), (1, 1))),
        ((6, 6), 3, 2, 2, ((2, 0), (0, 1))),
    ],
)
def test_tap_form_equals_xla_in_value_and_gradients(hw, kernel, cin, cout, padding):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(3, *hw, cin)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(kernel, kernel, cin, cout)), jnp.float32)
    value, (dx, dk) = grads('xla', x, k, padding)
    value2, (dx2, dk2) = grads('taps', x, k, padding)
    np.testing.assert_allclose(value2, value, rtol=1e-5)
    np.testing.assert_allclose(dx2, dx, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dk2, dk, rtol=1e-5, atol=1e-4)
    assert dk2.dtype == k.dtype and dx2.dtype == x.dtype


def test_tap_form_in_bfloat16_matches_xla_to_bfloat16_rounding():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(4, 8, 8, 8)), jnp.bfloat16)
    k = jnp.asarray(rng.normal(size=(3, 3, 8, 4)) * 0.1, jnp.bfloat16)
    _, (_, dk) = grads('xla', x, k, 'SAME')
    _, (_, dk2) = grads('taps', x, k, 'SAME')
    assert dk2.dtype == jnp.bfloat16
    scale = float(jnp.abs(dk.astype(jnp.float32)).max())
    diff = jnp.abs(dk2.astype(jnp.float32) - dk.astype(jnp.float32)).max()
    assert float(diff) <= 2e-2 * scale


def test_auto_uses_taps_on_cpu_only_for_large_maps_with_enough_channels(monkeypatch):
    monkeypatch.setattr(jax, 'default_backend', lambda: 'cpu')
    assert conv.kernel_grad_form('auto', (1024, 32, 32, 8)) == 'taps'
    assert conv.kernel_grad_form('auto', (1024, 16, 16, 12)) == 'taps'
    assert conv.kernel_grad_form('auto', (1024, 64, 64, 3)) == 'xla'  # the image itself
    assert conv.kernel_grad_form('auto', (1024, 8, 8, 16)) == 'xla'
    assert conv.kernel_grad_form('xla', (1024, 32, 32, 8)) == 'xla'
    assert conv.kernel_grad_form('taps', (1024, 4, 4, 1)) == 'taps'
    # Strided and grouped convolutions have no tap form.
    assert conv.kernel_grad_form('taps', (1024, 32, 32, 8), strides=(2, 2)) == 'xla'
    assert conv.kernel_grad_form('auto', (1024, 32, 32, 8), groups=2) == 'xla'
    monkeypatch.setattr(jax, 'default_backend', lambda: 'gpu')
    assert conv.kernel_grad_form('auto', (1024, 32, 32, 8)) == 'xla'


def test_unknown_form_names_the_choices():
    with pytest.raises(
        ValueError, match="Unknown kernel gradient form 'fast': use auto, xla, taps"
    ):
        conv.kernel_grad_form('fast', (1, 8, 8, 8))


def test_inside_a_loop_auto_uses_taps_for_every_stride_1_convolution_on_cpu(monkeypatch):
    monkeypatch.setattr(jax, 'default_backend', lambda: 'cpu')
    with conv.in_loop():
        assert conv.kernel_grad_form('auto', (1024, 64, 64, 3)) == 'taps'
        assert conv.kernel_grad_form('auto', (1024, 8, 8, 16)) == 'taps'
        assert conv.kernel_grad_form('xla', (1024, 8, 8, 16)) == 'xla'
        assert conv.kernel_grad_form('auto', (1024, 32, 32, 8), strides=(2, 2)) == 'xla'
        monkeypatch.setattr(jax, 'default_backend', lambda: 'gpu')
        assert conv.kernel_grad_form('auto', (1024, 64, 64, 3)) == 'xla'
        monkeypatch.setattr(jax, 'default_backend', lambda: 'cpu')
    assert conv.kernel_grad_form('auto', (1024, 64, 64, 3)) == 'xla'


def test_the_device_loop_traces_the_train_step_as_a_loop_body():
    from embodied.jax import device_loop

    seen = []

    class Model:
        def train(self, carry, batch):
            seen.append(conv.kernel_grad_form('auto', (16, 8, 8, 3)))
            return carry, batch

    key = jax.random.PRNGKey(0)
    jax.jit(device_loop._train_in_loop, static_argnums=0)(Model(), {}, 1, 2, key)
    on_cpu = jax.default_backend() == 'cpu'
    assert seen == ['taps' if on_cpu else 'xla']
    assert conv.kernel_grad_form('auto', (16, 8, 8, 3)) == 'xla'
