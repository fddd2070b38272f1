"""A trained agent's policy for the user's own loop: `load_policy(logdir)` and `policy(obs)`.

    import dreamerv3
    policy = dreamerv3.load_policy('~/logdir/run1')
    act = policy(obs)

The run's `config.yaml` rebuilds the agent; its latest checkpoint (or the checkpoint folder
given) provides the weights. No logger, replay or driver is involved. Logdirs of the reference
implementation (danijar/dreamerv3) load as well.
"""

import contextlib
import io
import os

import elements
import numpy as np

MODES = ('eval', 'train')

# jax.* settings for acting on one device of this machine, whatever the run trained on.
LOCAL_JAX = {
    'jax.policy_devices': [0],
    'jax.train_devices': [0],
    'jax.policy_mesh': '-1,1,1',
    'jax.train_mesh': '-1,1,1',
    'jax.mock_devices': 0,
    'jax.expect_devices': 0,
    'jax.num_processes': 1,
    'jax.process_id': -1,
    'jax.coordinator_address': '',
    'jax.enable_policy': True,
    # Acting compiles only the policy; precompiling would also compile training.
    'jax.precompile': False,
    'jax.profiler': False,
    # A policy needs little memory; do not reserve most of the GPU for it.
    'jax.prealloc': False,
}


def load_policy(
    path: str,
    batch: int | None = None,
    mode: str = 'eval',
    platform: str | None = None,
    verbose: bool = False,
) -> 'Policy':
    """The policy of a run's logdir or checkpoint folder, ready to act on observations.

    `batch=None` acts on one environment's observation at a time (no batch axis); `batch=N`
    acts on N environments at once (every array has a leading axis of N). `platform` is `cpu`,
    `cuda`, ...; by default JAX picks the best available device. Loading prints nothing to
    stdout unless `verbose` (the agent's banner, the checkpoint it loads).
    """
    with contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO()):
        return _load(path, batch, mode, platform)


def _load(path, batch, mode, platform) -> 'Policy':
    from embodied.run import checkpoints

    if mode not in MODES:
        raise ValueError(f'mode must be one of {MODES}, not {mode!r}.')
    if batch is not None and (not isinstance(batch, int) or batch < 1):
        raise ValueError(f'batch must be None (one environment) or a positive int, not {batch!r}.')
    path = os.path.expanduser(str(path))
    folder = checkpoints.resolve(path)
    logdir = find_logdir(path)
    config = saved_config(logdir)
    if config.random_agent:
        raise checkpoints.CheckpointError(
            f"The run in '{logdir}' used --random_agent True and has no trained policy to load."
        )
    # Configs of older runs may lack some of these keys; they keep their defaults then.
    local = {k: v for k, v in LOCAL_JAX.items() if k in config.flat}
    config = config.update({**local, 'jax.platform': platform or '', 'logdir': str(logdir)})
    from .main import make_agent

    agent = make_agent(config)
    # Given a logdir, this falls back to an older checkpoint when the newest does not verify.
    checkpoints.load_agent(agent, path)
    return Policy(agent, config, folder, batch, mode)


def saved_config(logdir) -> elements.Config:
    """The config.yaml of a run, with the defaults for keys it lacks."""
    from . import config as configlib

    saved = elements.Config.load(elements.Path(logdir) / 'config.yaml')
    # Runs of the reference implementation (danijar/dreamerv3) and of earlier versions lack
    # the newer keys, none of which changes the model.
    defaults = elements.Config(configlib.load_presets()['defaults'])
    return elements.Config({**defaults.flat, **saved.flat})


def find_logdir(path) -> elements.Path:
    """The run folder holding config.yaml for a logdir or a checkpoint folder inside it."""
    from embodied.run import checkpoints

    path = elements.Path(os.path.expanduser(str(path)))
    # logdir, logdir/ckpt, logdir/ckpt/<time>, logdir/ckpt/agent/<time> (parallel runs).
    for candidate in (path, path.parent, path.parent.parent, path.parent.parent.parent):
        if (candidate / 'config.yaml').exists():
            return candidate
    raise checkpoints.CheckpointError(
        f"No config.yaml found at '{path}' or the three folders above it. Pass the logdir of "
        'a run (it holds config.yaml and ckpt/) or a checkpoint folder inside it.'
    )


class Policy:
    """Acts with a loaded agent, keeping one recurrent carry per environment.

    `policy(obs)` takes a dict of numpy arrays as the environment returns them (keys of
    `obs_space`; other keys such as `log/...` are ignored) and returns the action dict of
    `act_space` plus `reset`, which is `is_last`, so that `env.step(policy(obs))` works on the
    run's environment (`make_env`). Continuous actions are in [-1, 1]; the environment's
    wrappers map them onto its bounds. The carry of an environment restarts whenever its
    observation has `is_first`, and on `reset()`.
    """

    def __init__(self, agent, config, checkpoint, batch=None, mode='eval'):
        self.agent = agent
        self.config = config
        self.checkpoint = checkpoint
        self.batch = batch
        self.mode = mode
        self.obs_space = dict(agent.obs_space)
        self.act_space = dict(agent.act_space)
        self._initial = agent.init_policy(1)[0]
        self._carry = [self._initial] * (batch or 1)

    def __call__(self, obs: dict) -> dict:
        """The action for one observation (or for a batch of them when `batch` was given)."""
        obs = self._prepare(obs)
        for index in np.flatnonzero(obs['is_first']):
            self._carry[index] = self._initial
        self._carry, act, _ = self.agent.policy(self._carry, obs, mode=self.mode)
        act = {k: np.asarray(v) for k, v in act.items()}
        act['reset'] = obs['is_last'].copy()
        if self.batch is None:
            act = {k: v[0] for k, v in act.items()}
        return act

    def reset(self, index: int | None = None) -> None:
        """Restart the carry of every environment, or of environment `index` only."""
        if index is None:
            self._carry = [self._initial] * len(self._carry)
        else:
            self._carry[index] = self._initial

    def reset_action(self) -> dict:
        """An action that starts a new episode: zeros for every key and `reset` set."""
        act = {k: np.zeros(v.shape, v.dtype) for k, v in self.act_space.items()}
        if self.batch is not None:
            act = {k: np.repeat(v[None], self.batch, 0) for k, v in act.items()}
        act['reset'] = np.ones(self.batch, bool) if self.batch else np.bool_(True)
        return act

    def make_env(self, index: int = 0, task: str | None = None, **overrides):
        """Environment `index` of the run's task (or of `task`), wrapped as in training."""
        config = self.config.update(task=task) if task else self.config
        from embodied.envs import registry

        return registry.make_env(config, index, **overrides)

    def _prepare(self, obs):
        missing = sorted(set(self.obs_space) - set(obs))
        if missing:
            raise KeyError(
                f'The observation lacks the keys {missing} of the policy observation space '
                f'{sorted(self.obs_space)}; pass the dict the environment returned.'
            )
        batch = self.batch or 1
        result = {}
        for key, space in self.obs_space.items():
            value = np.asarray(obs[key])
            if self.batch is None:
                value = value[None]
            if value.shape != (batch, *space.shape):
                expected = space.shape if self.batch is None else (batch, *space.shape)
                shape = value.shape[1:] if self.batch is None else value.shape
                raise ValueError(
                    f'Observation {key!r} has shape {shape}; this policy expects {expected}.'
                )
            result[key] = value.astype(space.dtype, copy=False)
        return result
