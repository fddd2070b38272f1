"""JAX-native adapters: the pure form equals the host form, with the driver's step semantics."""

import elements
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from embodied.envs import jaxenv, registry

FLAGS = ('reward', 'is_first', 'is_last', 'is_terminal')


def host_rollout(env, actions):
    """Steps of the host form as the driver takes them: reset first and after every last step."""
    steps, reset = [], True
    for action in actions:
        obs = env.step({'action': np.asarray(action), 'reset': reset})
        steps.append(obs)
        reset = bool(obs['is_last'])
    return {k: np.stack([s[k] for s in steps]) for k in steps[0]}


def pure_rollout(adapter, seed, actions):
    """The same steps from the pure functions, keys derived as the device loop derives them."""
    key = jax.random.PRNGKey(seed)

    def body(state, inputs):
        index, action = inputs
        state, obs = adapter.step(state, {'action': action}, jax.random.fold_in(key, index))
        return state, (obs, state.score, state.length)

    with jax.transfer_guard('allow'):
        indices = jnp.arange(len(actions))
        _, (obs, scores, lengths) = jax.jit(
            lambda: jax.lax.scan(
                body, adapter.init(key), (indices, jnp.asarray(actions, jnp.int32))
            )
        )()
        return jax.device_get(obs), np.asarray(scores), np.asarray(lengths)


def check_episodes(obs, scores, lengths):
    """Flags, scores and lengths follow the driver: is_first after is_last, its reward 0."""
    first, last = obs['is_first'], obs['is_last']
    assert first[0] and not last[0]
    np.testing.assert_array_equal(first[1:], last[:-1])
    assert not np.any(first & last)
    assert np.all(obs['reward'][first] == 0)
    assert np.all(obs['is_terminal'] <= last)
    start = 0
    for end in np.nonzero(last)[0]:
        np.testing.assert_allclose(scores[end], obs['reward'][start : end + 1].sum(), rtol=1e-6)
        assert lengths[end] == end - start
        start = end + 1


@pytest.mark.parametrize(
    'task, steps, episodes',
    [('gymnax_CartPole-v1', 120, 3), ('xminigrid_MiniGrid-Empty-5x5', 150, 1)],
)
def test_pure_form_equals_host_form_over_episode_boundaries(task, steps, episodes):
    suite, name = task.split('_', 1)
    adapter = registry.make_jax_env(elements.Config(task=task, env={suite: {'use_seed': True}}))
    actions = np.random.RandomState(0).randint(0, adapter.act_space['action'].high, steps)
    host = host_rollout(registry.load(suite)(name, seed=7), actions)
    pure, scores, lengths = pure_rollout(adapter, 7, actions)
    assert set(host) == set(pure) == set(adapter.obs_space)
    for key in host:
        np.testing.assert_array_equal(host[key], pure[key], err_msg=key)
        assert host[key].dtype == adapter.obs_space[key].dtype, key
    assert pure['is_last'].sum() >= episodes
    check_episodes(pure, scores, lengths)


def test_cartpole_falls_as_a_terminal_step_and_its_time_limit_is_not():
    from embodied.envs.from_gymnax import Gymnax

    adapter = Gymnax('CartPole-v1')
    obs, _, _ = pure_rollout(adapter, 0, np.zeros(40, np.int32))
    # Always pushing left tips the pole over within a few dozen steps.
    assert obs['is_last'].any()
    np.testing.assert_array_equal(obs['is_terminal'], obs['is_last'])
    adapter._params = adapter._params.replace(max_steps_in_episode=5)
    obs, _, _ = pure_rollout(adapter, 0, np.arange(12) % 2)
    assert obs['is_last'].sum() == 2 and not obs['is_terminal'].any()


def test_unknown_ids_name_close_ones():
    from embodied.envs.from_gymnax import Gymnax

    with pytest.raises(ValueError, match='Did you mean CartPole-v1'):
        Gymnax('CartPole-v2')


def test_batched_reset_starts_fewer_episodes_and_every_one_that_is_due():
    from embodied.envs.from_gymnax import Gymnax

    adapter = Gymnax('CartPole-v1')
    adapter.reset_ratio = 4
    count = 8
    keys = jax.vmap(jax.random.PRNGKey)(jnp.arange(count))
    actions = {'action': jnp.ones(count, jnp.int32)}
    with jax.transfer_guard('allow'):
        states = jax.vmap(adapter.init)(keys)
        step = jax.jit(adapter.step_batch)
        states, first = step(states, actions, keys)
        states, second = step(states, actions, jax.vmap(jax.random.fold_in, (0, None))(keys, 1))
    assert first['is_first'].all() and not first['reward'].any()
    # Two episodes for eight environments: 0, 2, 4, 6 start in one, 1, 3, 5, 7 in the other.
    starts = np.asarray(first['vector'])
    np.testing.assert_array_equal(starts[0::2], np.broadcast_to(starts[0], (4, 4)))
    np.testing.assert_array_equal(starts[1::2], np.broadcast_to(starts[1], (4, 4)))
    assert not np.array_equal(starts[0], starts[1])
    assert not second['is_first'].any() and second['reward'].all()
    assert np.asarray(states.length).tolist() == [1] * count


def test_host_form_through_make_env_has_the_standard_keys():
    from embodied.envs import from_gymnax

    config = elements.Config(task='gymnax_CartPole-v1', seed=3, env={'gymnax': {'use_seed': True}})
    env = registry.make_env(config, 1)
    assert set(env.obs_space) == set(from_gymnax.Gymnax('CartPole-v1').obs_space)
    obs = env.step({'action': np.int32(0), 'reset': True})
    assert obs['is_first'] and obs['vector'].shape == (4,)
    direct = jaxenv.HostEnv(from_gymnax.Gymnax('CartPole-v1'), registry.env_seed(3, 1))
    np.testing.assert_array_equal(
        obs['vector'], direct.step({'action': np.int32(0), 'reset': True})['vector']
    )
