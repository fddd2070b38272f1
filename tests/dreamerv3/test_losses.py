"""Pure loss math of DreamerV3 against hand-computed values: λ-returns, KL with free nats."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dreamerv3.agent import lambda_return, openloop_video
from dreamerv3.rssm import kl_losses

# numpy-only and version-sensitive: also runs under the reference pin in CI.
pytestmark = pytest.mark.pinned


def test_lambda_return_hand_computed():
    # Row 0: no terminals. R2 = 30; R1 = 2 + .5(.5*30 + .5*30) = 17;
    #   R0 = 1 + .5(.5*20 + .5*17) = 10.25.
    # Row 1: term at t=1 cuts the return to the reward, last at t=2 disables the λ-mix there:
    #   R1 = 2 + .5 * 30 = 17; R0 = 1.
    rew = np.array([[0, 1, 2], [0, 1, 2]], np.float32)
    boot = np.array([[10, 20, 30], [10, 20, 30]], np.float32)
    term = np.array([[0, 0, 0], [0, 1, 0]], np.float32)
    last = np.array([[0, 0, 0], [0, 0, 1]], np.float32)
    ret = lambda_return(last, term, rew, boot, 0.5, 0.5)
    np.testing.assert_allclose(ret, [[10.25, 17.0], [1.0, 17.0]], rtol=1e-6)


def test_lambda_return_limits():
    rng = np.random.default_rng(0)
    rew, boot = rng.normal(size=(2, 2, 6)).astype(np.float32)
    zeros = np.zeros_like(rew)
    # λ = 1, γ = 1: Monte-Carlo sum of the future rewards plus the final bootstrap.
    mc = lambda_return(zeros, zeros, rew, boot, 1.0, 1.0)
    expected = np.flip(np.cumsum(np.flip(rew[:, 1:], 1), 1), 1) + boot[:, -1:]
    np.testing.assert_allclose(mc, expected, rtol=1e-5, atol=1e-5)
    # λ = 0: one-step TD targets.
    td = lambda_return(zeros, zeros, rew, boot, 0.9, 0.0)
    np.testing.assert_allclose(td, rew[:, 1:] + 0.9 * boot[:, 1:], rtol=1e-6)
    # Soft terminations (1 - continue probability) scale the bootstrap.
    term = np.full_like(rew, 0.25)
    td = lambda_return(zeros, term, rew, boot, 1.0, 0.0)
    np.testing.assert_allclose(td, rew[:, 1:] + 0.75 * boot[:, 1:], rtol=1e-6)


def test_lambda_return_rejects_mismatched_shapes():
    x = np.zeros((2, 5), np.float32)
    with pytest.raises(ValueError, match='equal'):
        lambda_return(x, x, x, x[:, :4], 1.0, 0.95)


def unimix_probs(logits, unimix):
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    return (1 - unimix) * probs + unimix / logits.shape[-1]


def test_kl_free_nats_hand_computed():
    # Two latent variables with two classes each; KL summed over variables, then clipped.
    post = np.array([[[2.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]], np.float32)
    prior = np.array([[[-2.0, 0.0], [1.0, -1.0]], [[0.0, 0.0], [0.0, 0.0]]], np.float32)
    q, p = unimix_probs(post, 0.01), unimix_probs(prior, 0.01)
    kl = (q * (np.log(q) - np.log(p))).sum((-1, -2))
    assert kl[0] > 1.0 and kl[1] == 0.0
    dyn, rep = kl_losses(jnp.asarray(post), jnp.asarray(prior), 0.01, 1.0)
    np.testing.assert_allclose(dyn, [kl[0], 1.0], rtol=1e-5)
    np.testing.assert_allclose(rep, [kl[0], 1.0], rtol=1e-5)
    dyn, rep = kl_losses(jnp.asarray(post), jnp.asarray(prior), 0.01, 0.0)
    np.testing.assert_allclose(dyn, kl, rtol=1e-5, atol=1e-7)


def test_kl_gradients_split_between_prior_and_posterior():
    rng = np.random.default_rng(1)
    post, prior = jnp.asarray(rng.normal(size=(2, 3, 2, 4)) * 3, jnp.float32)
    fn = lambda which: lambda q, p: kl_losses(q, p, 0.01, 0.0)[which].sum()
    dq, dp = jax.grad(fn(0), (0, 1))(post, prior)
    assert np.abs(dq).max() == 0 and np.abs(dp).max() > 0
    dq, dp = jax.grad(fn(1), (0, 1))(post, prior)
    assert np.abs(dq).max() > 0 and np.abs(dp).max() == 0
    # Below the free-nats threshold neither term passes gradients.
    small = jnp.zeros_like(post)
    grads = jax.grad(lambda q, p: sum(kl_losses(q, p, 0.01, 1.0)).sum(), (0, 1))(small, small)
    assert all(np.abs(g).max() == 0 for g in grads)


def test_openloop_video_layout():
    B, T, H, W, C = 2, 4, 3, 5, 3
    true = np.full((B, T, H, W, C), 100, np.uint8)
    pred = np.full((B, T, H, W, C), 200 / 255, np.float32)
    video = np.asarray(openloop_video(jnp.asarray(true), jnp.asarray(pred)))
    assert video.shape == (T + 10, 3 * H + 4, B * (W + 4), C) and video.dtype == np.uint8
    inner = video[0, 2:-2, 2 : W + 2]
    assert (inner[:H] == 100).all() and (inner[H : 2 * H] == 200).all()
    assert (inner[2 * H :] == (200 - 100 + 255) // 2).all()
    assert video[0, 0, 0].tolist() == [0, 255, 0]  # observed half: green frame
    assert video[T - 1, 0, 0].tolist() == [255, 0, 0]  # open-loop half: red frame
    assert (video[T:] == 0).all()  # ten black frames
