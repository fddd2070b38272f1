"""The train loop of JAX-native environments as one compiled program, for many seeds at once.

One iteration does what the host loop does for one driver step: every environment steps with
its pending action (resetting after the end of an episode), the policy acts on the new
observations (actions of environments whose step was last are zeroed), the transitions go into
the device replay, and the agent makes as many updates as the train ratio asks for, each on a
batch sampled from the replay, with the replay context it recomputes written back. A call runs
`chunk` iterations in a `scan` without leaving the device; the host decides the number of
updates of every iteration (`schedule`, the host loop's train ratio clock) and reads back only
finished episodes and summed train metrics.

Everything per seed (parameters and optimizer state, environments, replay, keys, carries) is
one pytree with a leading axis of seeds, and the iteration is vmapped over it, so N seeds train
as N independent agents in one program. The losses, policy and optimizer are the model's own
(`model.policy` and `model.train` under ninjax).

On a mesh of several devices the program is data-parallel: the environments with their
carries are split over the mesh's data axes, and the replay is one replay per device (a group
of `envs / devices` environments with `replay.size / devices` items), from which each device
samples `batch_size / devices` rows of the batch; the parameters and optimizer state are
mirrored and XLA's partitioner averages the gradients. Sampling per group draws the same items
as uniform sampling over all environments in expectation (every group holds as many items);
with one device there is one group and nothing changes.
"""

import functools

import jax
import jax.numpy as jnp
import ninjax as nj
import numpy as np

from . import conv as convlib
from . import device_replay as dr
from .transform import DATA_AXES

P = jax.sharding.PartitionSpec
# Entries of the state with an axis of environments (or batch rows) after the seeds axis.
SPLIT = ('policy_carry', 'train_carry', 'envs', 'act', 'env_keys')

# Keys of the observation that the replay stores besides the model's inputs.
FLAGS = ('reward', 'is_first', 'is_last', 'is_terminal')


class DeviceLoop:
    """Builds the state of N seeds and the compiled program that advances it."""

    def __init__(self, model, env, config, seeds, env_seeds, mesh):
        """`mesh`: the devices of the program (the agent's train mesh)."""
        self.model = model
        self.mesh = mesh
        self.env = env
        self.config = config
        self.seeds = list(seeds)
        self.env_seeds = np.asarray(env_seeds, np.uint32)  # (seeds, envs)
        self.envs = self.env_seeds.shape[1]
        self.batch = config.batch_size
        self.context = config.replay_context
        self.groups = int(np.prod([mesh.shape[axis] for axis in DATA_AXES]))
        for name, count in (('run.envs', self.envs), ('batch_size', self.batch)):
            if count % self.groups:
                raise ValueError(
                    f'{name} ({count}) must be a multiple of the {self.groups} devices of the '
                    'data axes of jax.train_mesh, which split the environments and the batch.'
                )
        length = config.batch_length + config.replay_context
        size = config.replay.size // self.groups
        online = config.replay.online
        self.layout = dr.layout(self.envs // self.groups, length, size, online)
        spaces = {**model.obs_space, **model.act_space, **model.ext_space}
        self.stored = {k: v for k, v in spaces.items() if k not in ('stepid', 'consec')}
        named = lambda spec: jax.sharding.NamedSharding(mesh, spec)
        self.mirrored = named(P())
        self.split = named(P(DATA_AXES))
        self.shardings = None  # of the state, known once `init` has seen the parameters
        self._chunk = None
        # Jitted, so that the metric shapes (`_run`) and the update loop share one trace of it.
        self._train = jax.jit(functools.partial(_train_in_loop, model))

    def _init_inputs(self):
        return np.asarray(self.seeds, np.uint32), self.env_seeds

    def _shardings(self, shapes):
        """Environments, replay rings and carries split over the data axes; the rest mirrored."""
        split = jax.sharding.NamedSharding(self.mesh, P(None, DATA_AXES))
        pick = lambda leaf: split if leaf.ndim >= 2 else self.mirrored
        result = {}
        for key, value in shapes.items():
            if key in SPLIT or key == 'replay':
                result[key] = jax.tree.map(pick, value)
            else:
                result[key] = jax.tree.map(lambda _: self.mirrored, value)
        return result

    def ready(self, iteration: int, env: int) -> bool:
        """Whether `train`'s replay would hold a batch's worth of items after environment `env`
        of iteration `iteration` (0-based) has added its step."""
        lay = self.layout
        items = lambda steps: min(max(steps - lay.length + 1, 0), lay.items)
        total = (env + 1) * items(iteration + 1) + (self.envs - env - 1) * items(iteration)
        return total >= self.batch * self.config.batch_length

    def schedule(self, ratio, steps: int, chunk: int) -> np.ndarray:
        """The updates of each of the next `chunk` iterations after `steps` (see `schedule`)."""
        return schedule(ratio, steps, self.envs, chunk, self.ready)

    def replay_bytes(self) -> int:
        """Device memory of the replays of all seeds."""
        return dr.nbytes(self.stored, self.layout) * self.groups * len(self.seeds)

    def init(self, params: list[dict]) -> dict:
        """The initial state of every seed, from each seed's initial model state."""
        params = jax.tree.map(lambda *xs: np.stack(xs), *jax.device_get(params))
        inputs = jax.device_put((params, *self._init_inputs()), self.mirrored)
        self.shardings = self._shardings(jax.eval_shape(self._init_all, *inputs))
        self._chunk = jax.jit(
            self._run,
            donate_argnums=0,
            in_shardings=(self.shardings, self.mirrored),
            out_shardings=(self.shardings, self.mirrored),
        )
        return jax.jit(self._init_all, out_shardings=self.shardings)(*inputs)

    def _init_all(self, params, seeds, env_seeds):
        state = jax.vmap(self._init_one)(params, seeds, env_seeds)
        # Some environments start with weakly typed counters; a state restored from a
        # checkpoint has none, and the program compiled for one would not serve the other.
        return jax.tree.map(lambda x: jax.lax.convert_element_type(x, x.dtype), state)

    def _init_one(self, params, seed, env_seeds):
        key = jax.random.PRNGKey(seed)
        env_keys = jax.vmap(jax.random.PRNGKey)(env_seeds)
        envs = jax.vmap(self.env.init)(env_keys)
        pure = lambda fn, *args: nj.pure(fn)(params, *args, seed=key)[1]
        act = {
            k: jnp.zeros((self.envs, *s.shape), s.dtype) for k, s in self.model.act_space.items()
        }
        return {
            'params': dict(params),
            'policy_carry': pure(self.model.init_policy, self.envs),
            'train_carry': pure(self.model.init_train, self.batch),
            'envs': envs,
            'act': act,
            'replay': jax.vmap(lambda _: dr.init(self.stored, self.layout))(
                jnp.arange(self.groups)
            ),
            'env_keys': env_keys,
            'keys': jax.random.split(key, 3),  # policy, sampling, training
            'steps': jnp.int32(0),  # steps of each environment
            'updates': jnp.int32(0),
        }

    def __call__(self, state: dict, updates: np.ndarray):
        """Run `len(updates)` iterations, iteration i making `updates[i]` updates.

        Returns the new state (the old one is donated) and the outputs: per iteration and seed
        the finished episodes' mask, score and length (chunk, seeds, envs), and per seed the
        sums of the scalar train metrics and the number of updates.
        """
        updates = jax.device_put(np.asarray(updates, np.int32), self.mirrored)
        return self._chunk(state, updates)

    def _run(self, state, updates):
        one = jax.tree.map(lambda x: x[0], state)
        shapes = jax.eval_shape(lambda: self._update(one, one['replay'], one['steps'])[-1])
        zero = {k: jnp.float32(0) for k in shapes}
        sums = {k: jnp.zeros((len(self.seeds),), jnp.float32) for k in shapes}

        def body(carry, count):
            state, sums = carry
            iteration = jax.vmap(self._iteration, in_axes=(0, None, None))
            state, episodes, metrics = iteration(state, count, zero)
            return (state, jax.tree.map(jnp.add, sums, metrics)), episodes

        (state, sums), episodes = jax.lax.scan(body, (state, sums), updates)
        return state, {'episodes': episodes, 'metrics': sums}

    def compile(self, state: dict, chunk: int) -> None:
        """Compile the program for calls of `chunk` iterations ahead of the first call."""
        updates = jax.ShapeDtypeStruct((chunk,), jnp.int32)
        self._chunk = self._chunk.lower(state, updates).compile()

    def _update(self, state, replay, steps):
        """One update on a batch sampled after `steps` steps; returns the new (params, train
        carry, replay) and the scalar metrics."""
        number = state['updates']
        key = jax.random.fold_in(state['keys'][1], number)
        sample = lambda replay, key, group: dr.sample(
            replay, self.layout, steps, key, self.batch // self.groups, group * self.layout.envs
        )
        keys = jax.random.split(key, self.groups)
        groups = jnp.arange(self.groups)
        replay, rows, batch = jax.vmap(sample)(replay, keys, groups)
        batch = jax.tree.map(lambda x: x.reshape((self.batch, *x.shape[2:])), batch)
        batch['consec'] = jnp.zeros(batch['is_first'].shape, jnp.int32)
        batch = jax.lax.with_sharding_constraint(batch, self.split)
        key = jax.random.fold_in(state['keys'][2], number)
        params, (train_carry, outs, metrics) = self._train(
            state['params'], state['train_carry'], batch, key
        )
        written = {k: v for k, v in outs['replay'].items() if k in self.stored}
        written = jax.tree.map(lambda x: x.reshape((self.groups, -1, *x.shape[1:])), written)
        write = lambda replay, rows, values: dr.write(
            replay, self.layout, rows, self.context, values
        )
        replay = jax.vmap(write)(replay, rows, written)
        return params, train_carry, replay, _scalars(metrics)

    def _iteration(self, state, count, zeros):
        model, lay = self.model, self.layout
        steps = state['steps']
        keys = jax.vmap(jax.random.fold_in, (0, None))(state['env_keys'], steps)
        envs, obs = self.env.step_batch(state['envs'], state['act'], keys)
        policy_key = jax.random.fold_in(state['keys'][0], steps)
        inputs = {k: obs[k] for k in model.obs_space}
        policy_carry, act, outs = nj.pure(model.policy)(
            state['params'], state['policy_carry'], inputs, seed=policy_key
        )[1]
        last = obs['is_last']
        # The next step resets these environments, so the action only matters as stored.
        act = {k: jnp.where(_rows(last, v), jnp.zeros_like(v), v) for k, v in act.items()}
        step = {**inputs, **act, **outs}
        step = jax.tree.map(lambda x: x.reshape((self.groups, -1, *x.shape[1:])), step)
        replay = jax.vmap(lambda r, s: dr.add(r, lay, steps, s))(state['replay'], step)

        def update(_, carry):
            inner, replay, metrics = carry
            params, train_carry, replay, mets = self._update(inner, replay, steps + 1)
            inner = {
                **inner,
                'params': params,
                'train_carry': train_carry,
                'updates': inner['updates'] + 1,
            }
            return inner, replay, jax.tree.map(jnp.add, metrics, mets)

        inner = {k: state[k] for k in ('params', 'train_carry', 'updates', 'keys')}
        inner, replay, metrics = jax.lax.fori_loop(0, count, update, (inner, replay, zeros))
        state = {
            **state,
            **inner,
            'policy_carry': policy_carry,
            'envs': envs,
            'act': act,
            'replay': replay,
            'steps': steps + 1,
        }
        episodes = {'done': last, 'score': envs.score, 'length': envs.length}
        return state, episodes, metrics


def _train_in_loop(model, params, carry, batch, key):
    """The model's train step, traced as the body of the update loop (see `conv.in_loop`)."""
    with convlib.in_loop():
        return nj.pure(model.train)(params, carry, batch, seed=key)


def _rows(mask, value):
    """`mask` (N,) broadcast against `value` (N, ...)."""
    return mask.reshape((-1,) + (1,) * (value.ndim - 1))


def _scalars(metrics: dict) -> dict:
    """The scalar metrics as float32."""
    return {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items() if jnp.ndim(v) == 0}


def schedule(ratio, steps: int, envs: int, chunk: int, ready) -> np.ndarray:
    """Updates per iteration for the next `chunk` iterations, as the host loop counts them.

    The host loop calls the train ratio clock after every environment's transition once the
    replay holds enough items (`ready(step, env)` says whether it does after environment `env`
    of the iteration that ends at `step`); `ratio` is that clock (`elements.when.Ratio`).
    """
    counts = np.zeros(chunk, np.int32)
    for i in range(chunk):
        iteration = steps + i  # steps of each environment before this iteration
        for env in range(envs):
            total = iteration * envs + env + 1
            if ready(iteration, env):
                counts[i] += ratio(total)
    return counts
