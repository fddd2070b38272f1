"""The JAX agent: wraps a ninjax model into jitted, sharded policy/train/report functions.

Behaviour worth knowing (kept on purpose because it overlaps host transfers
with device compute):
- `train` returns the outputs and metrics of the *previous* call; the first call returns empty
  dicts.
- The acting policy uses a separate copy of the policy parameters on the policy devices, which
  lags the learner by at least one update.
- Parameter arrays are donated to the train step: arrays read from `agent.params` are invalid
  after the next `train` call, so copy them to the host (`jax.device_get`) first.
- Compilation: `jax.precompile` compiles the train step when the agent is built, for batches of
  exactly (batch_size, batch_length + replay_context); `jax.precompile_report` does the same for
  the report step with (batch_size, report_length + replay_context). Otherwise a step compiles
  at its first call, so a script compiles only the steps it uses (the first report says so).
  The policy always compiles at its first call, for the batch of environments the script uses.
- With `jax.transfer_guard` (default), every host/device transfer must be explicit: read device
  arrays with `jax.device_get`, not `np.asarray`.
"""

import functools
import re
import threading
import time

import elements
import jax
import numpy as np

import embodied
from embodied.core import streams
from embodied.core.base import SetupError
from embodied.run import checkpoint_fit

from . import compile_times, opt
from . import transform as tf
from .setup import configure

P = jax.sharding.PartitionSpec


class Agent(embodied.Agent):
    """Jitted, sharded wrapper around a ninjax model built by `model_fn`.

    `config` is the run's config: this class reads its `jax` section, `seed`, `logdir` and the
    batch shape (`batch_size`, `batch_length`, `report_length`, `replay_context`);
    `model_fn(obs_space, act_space)` builds the model once JAX is set up.
    """

    def __init__(self, model_fn, obs_space, act_space, config):
        self.jaxcfg = config.jax
        configure(config.jax)

        bad = [k for k in obs_space if k.startswith('log/')]
        if bad or 'reset' in act_space:
            raise ValueError(
                f'Agent spaces must exclude log/ observation keys ({bad}) and the reset '
                f'action (present: {"reset" in act_space}); pass the spaces without them.'
            )
        self.obs_space = dict(obs_space)
        self.act_space = dict(act_space)
        self.config = config
        self.logdir = elements.Path(config.logdir)
        self.model = model_fn(obs_space, act_space)
        ext_space = dict(self.model.ext_space)
        overlap = (set(obs_space) | set(act_space)) & set(ext_space)
        if overlap or set(obs_space) & set(act_space):
            raise ValueError(
                f'Observation, action and extra keys must be disjoint; shared: '
                f'{sorted(overlap | (set(obs_space) & set(act_space)))}.'
            )
        self.spaces = {**self.obs_space, **self.act_space, **ext_space}
        for title, space in [
            ('Observations', obs_space),
            ('Actions', act_space),
            ('Extras', ext_space),
        ]:
            elements.print(title, color='cyan')
            for key, value in space.items():
                print(f'  {key:<16} {value}')

        self._setup_devices()
        self._lock_policy = threading.Lock()
        self._lock_train = threading.Lock()
        self._lock_counters = threading.Lock()
        self.n_updates = 0
        self.n_batches = 0
        self.n_actions = 0
        self._pending_outs = None
        self._pending_mets = None
        self._pending_sync = None
        self._policy_params = None
        self._profiling = False

        rules = getattr(self.model, 'partition_rules', None)
        self._param_rules = list(rules[0]) if rules else []
        elements.print('Initializing parameters...', color='yellow')
        self._params, self._train_params_sharding = self._init_params(config.seed)
        # A checkpoint the run loads that does not fit fails now, not after minutes of compiling.
        read = functools.partial(self._checkpoint_params, expected=self._params)
        checkpoint_fit.check_resume(config, self._params, read)
        pattern = re.compile(self.model.policy_keys)
        self.policy_keys = [k for k in self._params if pattern.search(k)]
        if not self.policy_keys:
            raise ValueError(
                f'The policy_keys regex {self.model.policy_keys!r} matches no parameter; '
                f'parameters are: {sorted(self._params)[:20]}.'
            )
        self._policy_params_sharding = {
            k: jax.sharding.NamedSharding(self.policy_mesh, s.spec)
            for k, s in self._train_params_sharding.items()
            if k in self.policy_keys
        }
        self._build_functions()
        if self.jaxcfg.enable_policy:
            self._policy_params = self._copy_policy_params()
        self._ckpt_groups = tf.checkpoint_groups(self._params, self.jaxcfg.ckpt_chunksize)
        # Whether the train step is compiled now; otherwise its first call compiles it.
        self.precompiled = False
        steps = [
            name
            for name, wanted in [
                ('train', self.jaxcfg.precompile),
                ('report', self.jaxcfg.precompile_report),
            ]
            if wanted
        ]
        # Without jit nothing compiles, so the first report has nothing to announce.
        self._report_compiled = 'report' in steps or jax.config.jax_disable_jit
        if steps and jax.config.jax_disable_jit:
            print('Skipping precompilation because jit is disabled.')
        elif steps:
            self._precompile(steps)
            self.precompiled = 'train' in steps
        elements.print('Agent ready.', color='yellow')

    @property
    def params(self):
        """Flat dict of all model state (weights, optimizer state, statistics) on device."""
        return dict(self._params)

    @property
    def policy_params(self):
        """The policy's own copy of the entries matching `model.policy_keys` (or None)."""
        return None if self._policy_params is None else dict(self._policy_params)

    def init_policy(self, batch_size):
        """Initial policy carry: a list with one entry per environment."""
        self._require_policy()
        self._check_divisible(batch_size, self.policy_mesh, 'policy', 'environments')
        total = self._global_batch(batch_size, self.policy_mesh)
        seed = self._seed(0, self.policy_mirrored)
        carry = self._init_policy(self._policy_params, seed, total)
        return self._split(tf.to_local(carry), batch_size)

    def init_train(self, batch_size):
        """Initial train carry (device arrays sharded over the train devices)."""
        total = self._global_batch(batch_size, self.train_mesh)
        return self._init_train(self._params, self._seed(0, self.train_mirrored), total)

    def init_report(self, batch_size):
        """Initial report carry (device arrays sharded over the train devices)."""
        total = self._global_batch(batch_size, self.train_mesh)
        return self._init_report(self._params, self._seed(0, self.train_mirrored), total)

    def policy(self, carry, obs, mode='train'):
        """Act on a batch of observations; returns (per-env carry list, actions, outputs)."""
        self._require_policy()
        self._check_obs(obs)
        batch = len(next(iter(obs.values())))
        self._check_divisible(batch, self.policy_mesh, 'policy', 'environments')
        if len(carry) != batch:
            raise ValueError(
                f'Policy carry has {len(carry)} entries but the observations hold {batch} '
                'environments; keep one carry entry per environment.'
            )
        with self._lock_policy:
            if self._pending_sync is not None:
                self._policy_params = self._pending_sync
                self._pending_sync = None
            with self._lock_counters:
                counter = self.n_actions
                self.n_actions += 1
            seed = self._seed(counter, self.policy_mirrored)
            obs = tf.device_put(dict(obs), self.policy_sharded)
            carry = self._stack(carry)
            carry, acts, outs = self._policy(self._policy_params, seed, carry, obs, mode)
        acts, outs = tf.fetch(tf.fetch_async((acts, outs)))
        carry = self._split(tf.to_local(carry), batch)
        for key, space in self.act_space.items():
            if space.discrete:
                if not (acts[key] >= 0).all():
                    raise ValueError(f'Policy returned negative discrete actions for {key!r}.')
            elif not np.isfinite(acts[key]).all():
                raise ValueError(f'Policy returned non-finite actions for {key!r}.')
        return carry, acts, outs

    def train(self, carry, data):
        """One update; returns (carry, outs, metrics) where outs/metrics are one call late."""
        data, seed = self._check_batch(data)
        with self._lock_train:
            kept = {k: self._params[k] for k in self.policy_keys}
            donated = {k: v for k, v in self._params.items() if k not in kept}
            with jax.profiler.StepTraceAnnotation('train', step_num=self.n_updates):
                self._params, carry, outs, mets = self._train(donated, kept, seed, carry, data)
            self.n_updates += 1
            if self.jaxcfg.enable_policy:
                with self._lock_policy:
                    # Copy the parameters this update started from: the acting policy lags the
                    # learner, and the copy overlaps with the running update.
                    if self._pending_sync is None:
                        self._pending_sync = tf.move(kept, self._policy_params_sharding)
            previous = self._pending_outs, self._pending_mets
            self._pending_outs = tf.fetch_async(outs)
            self._pending_mets = tf.fetch_async(mets)
        return_outs = {} if previous[0] is None else tf.fetch(previous[0])
        return_mets = {} if previous[1] is None else tf.fetch(previous[1])
        if self.jaxcfg.profiler:
            self._profile()
        return carry, return_outs, return_mets

    def report(self, carry, data):
        """Evaluate on a batch; returns (carry, metrics) with metrics of this call."""
        data, seed = self._check_batch(data)
        with self._lock_train:
            first = not self._report_compiled
            if first:
                print('Compiling the report step for the first report...', flush=True)
                start = time.monotonic()
            carry, mets = self._report(self._params, seed, carry, data)
            self._report_compiled = True
        mets = tf.fetch(mets)
        if first:
            seconds = time.monotonic() - start
            print(f'Compiled and ran the report step in {seconds:.1f} s.', flush=True)
        mets['params/summary'] = self._summary()
        return carry, mets

    def stream(self, st):
        """Prefetch batches: check for NaN, move to the train devices, attach a seed."""

        def transform(data):
            for key, value in data.items():
                value = np.asarray(value)
                if np.issubdtype(value.dtype, np.floating) and np.isnan(value).any():
                    raise ValueError(f'Batch key {key!r} contains NaN values.')
            batch = len(next(iter(data.values())))
            self._check_divisible(batch, self.train_mesh, 'train', 'batch entries')
            data = tf.device_put(dict(data), self.train_sharded)
            with self._lock_counters:
                counter = self.n_batches
                self.n_batches += 1
            return {**data, 'seed': self._seed(counter, self.train_mirrored)}

        return streams.Prefetch(st, transform)

    def save(self):
        """Host copy of all parameters and the counters."""
        with self._lock_train:
            params = {}
            for keys, gather, _ in self._ckpt_groups:
                group = gather({k: self._params[k] for k in keys})
                params.update(
                    {k: np.asarray(v) for k, v in jax.device_get(tf.to_local(group)).items()}
                )
        counters = {
            'updates': int(self.n_updates),
            'batches': int(self.n_batches),
            'actions': int(self.n_actions),
        }
        return {'params': params, 'counters': counters}

    def load(self, data, regex=None):
        """Restore counters and parameters (only keys matching `regex` when given)."""
        params = self._checkpoint_params(data, regex, self._params)
        mismatch = checkpoint_fit.compare(params, self._params, partial=bool(regex))
        if mismatch:
            raise ValueError(
                'The checkpoint does not fit this model; it was probably written by a run with '
                'another config (use the same config, a fresh logdir, or load a subset with a '
                f'regex): {mismatch.summary()}.\n{mismatch.listing()}'
            )
        counters = data['counters']
        with self._lock_train, self._lock_policy:
            with self._lock_counters:
                self.n_updates = int(counters['updates'])
                # Batches that were prefetched but never trained on get redrawn with the same
                # seeds after a restore.
                self.n_batches = int(counters['updates'])
                self.n_actions = int(counters['actions'])
            if regex:
                sharding = {k: self._train_params_sharding[k] for k in params}
                mirrored = tf.device_put(params, self.train_mirrored)
                shard = jax.jit(lambda x: x, out_shardings=sharding)
                self._params = {**self._params, **shard(mirrored)}
                print(f'Loaded {len(params)} parameters matching {regex!r}.')
            else:
                loaded = {}
                for keys, _, shard in self._ckpt_groups:
                    group = tf.device_put({k: params[k] for k in keys}, self.train_mirrored)
                    loaded.update(shard(group))
                self._params = loaded
            if self.jaxcfg.enable_policy:
                self._policy_params = self._copy_policy_params()
                self._pending_sync = None
            # Outputs of updates before the load belong to the replaced parameters.
            self._pending_outs = self._pending_mets = None

    def agree(self, flag):
        """Process 0's value of `flag` on every process, so collective calls stay in step."""
        if jax.process_count() == 1:
            return bool(flag)
        from jax.experimental import multihost_utils

        with jax.transfer_guard('allow'):
            return bool(multihost_utils.broadcast_one_to_all(np.asarray(bool(flag))))

    def _setup_devices(self):
        options = self.jaxcfg
        available = jax.devices()
        if options.expect_devices > 0 and len(available) != options.expect_devices:
            raise SetupError(
                f'Wrong number of devices: expected {options.expect_devices} JAX devices '
                f'(jax.expect_devices) but found {len(available)}: {available}. Match '
                '--jax.expect_devices to the machine, or pass --jax.expect_devices 0 to skip '
                'the check.'
            )
        local_count = jax.local_device_count()
        per_process = [
            sorted([d for d in available if d.process_index == p], key=lambda d: d.id)
            for p in range(jax.process_count())
        ]

        def select(indices, name):
            indices = [int(i) for i in indices]
            for i in indices:
                if not 0 <= i < local_count:
                    raise SetupError(
                        f'jax.{name} contains device index {i} but each process has '
                        f'{local_count} local devices (indices 0..{local_count - 1}).'
                    )
            return [devices[i] for devices in per_process for i in indices]

        self.policy_devices = select(options.policy_devices, 'policy_devices')
        self.train_devices = select(options.train_devices, 'train_devices')
        print(f'JAX devices ({len(available)}): {available}')
        print('Policy devices:', ', '.join(str(d) for d in self.policy_devices))
        print('Train devices: ', ', '.join(str(d) for d in self.train_devices))
        self.policy_mesh = tf.make_mesh(self.policy_devices, options.policy_mesh)
        self.train_mesh = tf.make_mesh(self.train_devices, options.train_mesh)
        if self.train_mesh.shape['t'] > len(options.train_devices) or self.policy_mesh.shape[
            't'
        ] > len(options.policy_devices):
            raise NotImplementedError(
                'Inter-node TP is not supported! The tensor axis t of jax.train_mesh '
                f'({self.train_mesh.shape["t"]}) and jax.policy_mesh '
                f'({self.policy_mesh.shape["t"]}) must not exceed the local device count of '
                'the train and policy devices.'
            )
        if options.use_shardmap:
            for name, mesh in [('train', self.train_mesh), ('policy', self.policy_mesh)]:
                if mesh.shape['d'] != mesh.size:
                    raise ValueError(
                        f'use_shardmap needs the data axis to span the whole {name} mesh, but '
                        f'the mesh is {dict(mesh.shape)}; set jax.{name}_mesh to -1,1,1.'
                    )
        named = jax.sharding.NamedSharding
        self.policy_sharded = named(self.policy_mesh, P(tf.DATA_AXES))
        self.policy_mirrored = named(self.policy_mesh, P())
        self.train_sharded = named(self.train_mesh, P(tf.DATA_AXES))
        self.train_mirrored = named(self.train_mesh, P())

    def init_params(self, seed: int) -> dict:
        """Initial model state (weights, optimizer and normaliser state) for another seed,
        created exactly as this agent created its own from `config.seed`."""
        seed = tf.device_put(np.array([seed, 0], np.uint32), self.train_mirrored)
        return dict(self._create(*self._create_args[:1], seed, *self._create_args[1:])[0])

    def _init_params(self, seed):
        config = self.config
        batch = min(config.batch_size, len(self.jaxcfg.train_devices))
        total = batch * jax.process_count()
        length = config.batch_length + config.replay_context
        seed = tf.device_put(np.array([seed, 0], np.uint32), self.train_mirrored)
        data = tf.device_put(self._zeros((batch, length)), self.train_sharded)
        mesh, rules = self.train_mesh, self._param_rules
        tm, ts = self.train_mirrored, self.train_sharded
        # Creation runs unsharded, so it uses the full batch even under shard_map.
        params, shardings = tf.init(
            functools.partial(self.model.init_train, total), mesh, {}, {}, seed, (), (), rules
        )
        init_train = tf.apply(
            self.model.init_train,
            mesh,
            (shardings, tm),
            (ts,),
            single_output=True,
            static_argnums=(2,),
            use_shardmap=self.jaxcfg.use_shardmap,
        )
        carry = init_train(params, seed, self._global_batch(total, mesh, False))
        self._create = tf.creator(self.model.train, mesh, shardings, (ts, ts), rules)
        self._create_args = (params, carry, data)
        return self._create(params, seed, carry, data)

    def _build_functions(self):
        shardmap = self.jaxcfg.use_shardmap
        tm, ts = self.train_mirrored, self.train_sharded
        pm, ps = self.policy_mirrored, self.policy_sharded
        tp, pp = self._train_params_sharding, self._policy_params_sharding
        kept = {k: v for k, v in tp.items() if k in self.policy_keys}
        donated = {k: v for k, v in tp.items() if k not in self.policy_keys}
        init = functools.partial(
            tf.apply, single_output=True, static_argnums=(2,), use_shardmap=shardmap
        )
        self._init_train = init(self.model.init_train, self.train_mesh, (tp, tm), (ts,))
        self._init_report = init(self.model.init_report, self.train_mesh, (tp, tm), (ts,))
        self._init_policy = init(self.model.init_policy, self.policy_mesh, (pp, pm), (ps,))
        self._train = tf.apply(
            self.model.train,
            self.train_mesh,
            (donated, kept, tm, ts, ts),
            (tp, ts, ts, tm),
            split_params=True,
            return_state=True,
            donate_argnums=(0,),
            use_shardmap=shardmap,
        )
        self._report = tf.apply(
            self.model.report, self.train_mesh, (tp, tm, ts, ts), (ts, tm), use_shardmap=shardmap
        )
        self._policy = tf.apply(
            self.model.policy,
            self.policy_mesh,
            (pp, pm, ps, ps),
            (ps, ps, ps),
            static_argnums=(4,),
            use_shardmap=shardmap,
        )
        local_sharded = tf.local_sharding(self.policy_sharded)
        local_mirrored = tf.local_sharding(self.policy_mirrored)
        self._local_policy_mirrored = local_mirrored
        self._split_fn = jax.jit(
            lambda tree: [
                jax.tree.map(lambda x: x[i], tree) for i in range(len(jax.tree.leaves(tree)[0]))
            ],
            in_shardings=local_sharded,
            out_shardings=local_mirrored,
        )
        self._stack_fn = jax.jit(
            lambda entries: jax.tree.map(lambda *xs: jax.numpy.stack(xs), *entries),
            in_shardings=local_mirrored,
            out_shardings=local_sharded,
        )

    def _split(self, carry, batch):
        """Batched process-local carry -> list with one entry per environment."""
        if not jax.tree.leaves(carry):
            return [carry] * batch
        return self._split_fn(carry)

    def _stack(self, carry):
        """List of per-environment carries -> batched global carry."""
        if not jax.tree.leaves(carry):
            return carry[0]
        # Entries that came from `_split` are already in place; a device_put of them all costs
        # milliseconds of Python per call (half a 16-env CartPole policy call), so only entries
        # made elsewhere are moved.
        target = self._local_policy_mirrored
        leaves = jax.tree.leaves(carry)
        if not all(isinstance(x, jax.Array) and x.sharding == target for x in leaves):
            carry = jax.device_put(list(carry), target)
        return tf.to_global(self._stack_fn(carry), self.policy_sharded)

    def _copy_policy_params(self):
        # Copy first so the policy never shares (donated) buffers with the train parameters.
        params = {k: self._params[k].copy() for k in self.policy_keys}
        return tf.move(params, self._policy_params_sharding)

    def _precompile(self, steps):
        """Compile the named steps ('train', 'report') ahead of time for the config's batch."""
        config = self.config
        context = config.replay_context
        times = compile_times.CompileTimes(self.jaxcfg.compile_times)
        for name, length, init in [
            ('train', config.batch_length, self.init_train),
            ('report', config.report_length, self.init_report),
        ]:
            if name not in steps:
                continue
            batch = config.batch_size
            data = tf.device_put(self._zeros((batch, length + context)), self.train_sharded)
            seed = self._seed(0, self.train_mirrored)
            carry = init(batch)
            key = compile_times.signature(name, (self._params, carry, data))
            elements.print(times.announce(key, f'{name} step'), color='yellow')
            start = time.monotonic()
            if name == 'train':
                kept = {k: self._params[k] for k in self.policy_keys}
                donated = {k: v for k, v in self._params.items() if k not in kept}
                compiled = self._train.lower(donated, kept, seed, carry, data).compile()
                self._train = compiled
            else:
                compiled = self._report.lower(self._params, seed, carry, data).compile()
                self._report = compiled
            seconds = time.monotonic() - start
            times.record(key, seconds)
            print(f'Compiled the {name} step in {seconds:.1f} s.')
            print(f'{name.capitalize()} cost analysis:')
            for line in tf.cost_summary(compiled):
                print(f'  {line}')

    def _profile(self):
        """Trace updates 100 to 120 into the logdir."""
        logdir = str(self.logdir)
        remote = logdir.startswith(('gs://', '/gcs/', '/cns/'))
        outdir = '/tmp/profiler' if remote else logdir
        if self.n_updates == 100 and not self._profiling:
            elements.Path(outdir).mkdir()
            elements.print(f'Start JAX profiler: {outdir}', color='yellow')
            jax.profiler.start_trace(outdir)
            self._profiling = True
        elif self.n_updates == 120 and self._profiling:
            jax.profiler.stop_trace()
            self._profiling = False
            elements.print('Stop JAX profiler', color='yellow')
            if remote:
                for path in elements.Path(outdir).glob('*'):
                    path.copy(self.logdir, recursive=True)

    def _seed(self, counter, sharding):
        rng = np.random.default_rng([self.config.seed, int(counter)])
        seed = rng.integers(0, np.iinfo(np.uint32).max, (2,), np.uint32)
        return tf.device_put(seed, sharding)

    def _global_batch(self, batch_size, mesh, per_process=True):
        total = batch_size * jax.process_count() if per_process else batch_size
        if self.jaxcfg.use_shardmap:
            if total % mesh.size:
                raise ValueError(
                    f'With use_shardmap the batch size {total} must be divisible by the '
                    f'{mesh.size} devices of the mesh.'
                )
            total //= mesh.size
        return total

    def _check_divisible(self, batch, mesh, name, what):
        shards = mesh.shape['d'] * mesh.shape['f'] // jax.process_count()
        if batch % max(shards, 1):
            raise ValueError(
                f'{batch} {what} cannot be split evenly over the {shards} local {name} devices '
                f'of this process; use a multiple of {shards} or change jax.{name}_devices.'
            )

    def _zeros(self, batch_shape):
        return {k: np.zeros((*batch_shape, *v.shape), v.dtype) for k, v in self.spaces.items()}

    def _summary(self):
        lines = [
            f'{k:<48} {str(v.dtype):<9} {v.size:>10} {v.shape}' for k, v in self._params.items()
        ]
        total = sum(v.size for v in self._params.values())
        return '\n'.join([*lines, f'{"total":<48} {"":<9} {total:>10}'])

    def _require_policy(self):
        if not self.jaxcfg.enable_policy:
            raise RuntimeError(
                'The policy is not available because jax.enable_policy is False; set it to '
                'True to act with this agent.'
            )

    def _check_obs(self, obs):
        if set(obs) != set(self.obs_space):
            raise ValueError(
                f'Policy observation keys {sorted(obs)} differ from the agent observation '
                f'space {sorted(self.obs_space)}; remove log/ keys and pass exactly the space.'
            )
        for key, value in obs.items():
            value = np.asarray(value)
            if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
                raise ValueError(f'Observation {key!r} contains non-finite values.')

    def _check_batch(self, data):
        data = dict(data)
        if 'seed' not in data:
            raise ValueError(
                'Batches for train() and report() must come from agent.stream(...), which '
                'moves them to the devices and attaches a seed; this batch has no seed key.'
            )
        seed = data.pop('seed')
        if set(data) != set(self.spaces):
            missing = sorted(set(self.spaces) - set(data))
            extra = sorted(set(data) - set(self.spaces))
            raise ValueError(
                f'Batch keys do not match the agent spaces: missing {missing}, unexpected {extra}.'
            )
        for key, value in data.items():
            space = self.spaces[key]
            if value.dtype != space.dtype or tuple(value.shape[2:]) != tuple(space.shape):
                raise ValueError(
                    f'Batch key {key!r} has dtype {value.dtype} and shape {value.shape}, '
                    f'expected {space.dtype} and (batch, length, *{space.shape}).'
                )
        return data, seed

    def _checkpoint_params(self, data, regex, expected):
        """Host arrays of checkpoint `data` under the names of `expected`, only those of `regex`."""
        params = {k: np.asarray(v) for k, v in jax.device_get(dict(data['params'])).items()}
        params = opt.upgrade_state_keys(params, expected)
        if regex:
            params = {k: v for k, v in params.items() if re.match(regex, k)}
            if not params:
                raise ValueError(f'No checkpoint parameter matches the regex {regex!r}.')
        return params
