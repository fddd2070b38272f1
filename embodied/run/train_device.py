"""The `train_device` script: JAX-native environments trained inside one compiled program.

The environments (`run.envs` of them), the policy, the replay and the updates all run on the
device (`embodied/jax/device_loop.py`), `run.device_chunk` iterations of all environments per
call, for `run.seeds` independent agents at once. Between calls the host logs (the metric names
of `train`), shows progress, saves checkpoints on the `run.save_every` clock and checks for
SIGINT or SIGTERM, after which it saves and stops.

With one seed the run is the logdir itself; with N seeds, seed i (`seed` + i) is the run
`<logdir>/seed<i>/`, with its own config.yaml, metrics, scores and checkpoints, which `plot` and
`score` read as seeds of one method (the logdir's name) and `load_policy` loads. A checkpoint of
a seed holds its agent (as `train` saves it), its device state (replay, environments, carries,
keys) and the step; a resumed run continues exactly where the checkpoint was taken.
"""

from __future__ import annotations

import time

import elements
import numpy as np
import psutil

from ..core import clock
from ..core.base import SetupError
from ..envs import registry
from . import checkpoints, interrupt, outputs
from .loop import Loop

# JAX is imported inside the functions that use it: the command line imports this module for
# every script, and starting JAX there would slow down every start.

# Share of the free device memory the replays may take; the rest is for the model and XLA.
MEMORY_SHARE = 0.8
# The device state of a seed, apart from its agent, as saved in its checkpoint.
DEVICE_KEYS = ('policy_carry', 'train_carry', 'envs', 'act', 'replay', 'env_keys', 'keys')


def make_program(config: elements.Config, agent, env, seeds: list[int]):
    """The device loop of `seeds`, each with `run.envs` environments seeded as the host loop
    seeds its environments."""
    from ..jax import device_loop

    env_seeds = [[registry.env_seed(s, i) for i in range(config.run.envs)] for s in seeds]
    return device_loop.DeviceLoop(agent.model, env, config, seeds, env_seeds, agent.train_mesh)


def train_device(config: elements.Config, make_agent) -> None:
    """Train `run.seeds` agents on a JAX-native task until `run.steps` env steps (per seed)."""
    from ..jax.setup import configure

    check(config)
    # The adapters compute with JAX, so its devices (mock ones too) must be set up first.
    configure(config.jax)
    env = registry.make_jax_env(config)
    run = config.run
    seeds = [config.seed + i for i in range(run.seeds)]
    runs = run_configs(config, seeds)
    with interrupt.Interrupt() as stop:
        # The agent builds the model and its initial state; the host never calls its steps.
        agent = make_agent(config.update({'jax.precompile': False}))
        check_spaces(agent, env)
        program = make_program(config, agent, env, seeds)
        if program.groups > 1:
            print(
                f'Data-parallel over {program.groups} devices: each steps '
                f'{run.envs // program.groups} environments, keeps their replay and samples '
                f'{config.batch_size // program.groups} rows of every batch.'
            )
        check_memory(program, config)
        state = program.init([agent.init_params(s) for s in seeds])
        loggers = [outputs.make_logger(c) for c in runs]
        loop = Loop(agent, loggers[0], config, run.steps, 'env steps', stop)
        trainer = Trainer(program, state, loggers, config, agent)
        try:
            saves = Saves(trainer, runs)
            saves.restore()
            print(
                f'Training {len(seeds)} seed(s) on the device from step {trainer.steps * run.envs}.'
            )
            trainer.compile()
            loop.on_log(trainer.log)
            loop.status = trainer.status
            stopped = loop.run(trainer.advance, saves)
            if loop.saved_to:
                loop.saved_to = saves.where()
        finally:
            loop.close()
            for logger in loggers[1:]:
                logger.close()
    if stopped:
        print(loop.stopped_line())
    else:
        print(f'Finished training at step {int(loop.step)}: {trainer.summary()}.')


def check(config: elements.Config) -> None:
    """Raise SetupError on settings the device loop does not support, before anything runs."""
    registry.check_jax_task(config.task)
    run = config.run
    if run.seeds < 1 or run.envs < 1 or run.device_chunk < 1:
        raise SetupError(
            'train_device needs run.seeds, run.envs and run.device_chunk of at least 1, got '
            f'{run.seeds}, {run.envs} and {run.device_chunk}.'
        )
    if config.replay.fracs.uniform < 1:
        raise SetupError(
            'train_device samples its replay uniformly; set --replay.fracs.uniform 1 (the '
            'prioritized and recency selectors run only in the host replay of train).'
        )
    if config.consec_train != 1:
        raise SetupError('train_device trains on one chunk per sample; set --consec_train 1.')
    if config.random_agent:
        raise SetupError('train_device trains the agent; drop --random_agent True.')
    if config.jax.num_processes > 1:
        raise SetupError(
            'train_device runs in one process (with every device of jax.train_devices); set '
            '--jax.num_processes 1.'
        )


def run_configs(config: elements.Config, seeds: list[int]) -> list[elements.Config]:
    """The config of every seed's run: the logdir itself for one seed, seed<i>/ otherwise."""
    if len(seeds) == 1:
        return [config]
    logdir = elements.Path(config.logdir)
    configs = []
    for index, seed in enumerate(seeds):
        folder = logdir / f'seed{index}'
        folder.mkdir()
        run = config.update({'seed': seed, 'logdir': str(folder), 'run.seeds': 1})
        run.save(folder / 'config.yaml')
        configs.append(run)
    return configs


def check_spaces(agent, env) -> None:
    """The agent, built from the host form of the task, must see the device form's spaces."""
    for name, ours, theirs in (
        ('observation', agent.obs_space, env.obs_space),
        ('action', agent.act_space, env.act_space),
    ):
        if {k: (v.dtype, v.shape) for k, v in ours.items()} != {
            k: (v.dtype, v.shape) for k, v in theirs.items()
        }:
            raise SetupError(
                f'The {name} spaces of the task on the host ({ours}) and on the device '
                f'({theirs}) differ.'
            )


def check_memory(program, config: elements.Config) -> None:
    """Print the replays' device memory; stop with the replay.size that fits when too large."""
    import jax

    needed = program.replay_bytes()
    device = jax.devices()[0]
    stats = device.memory_stats() or {}
    if 'bytes_limit' in stats:
        available = stats['bytes_limit'] - stats.get('bytes_in_use', 0)
    else:
        available = psutil.virtual_memory().available
    lay, envs, devices = program.layout, program.envs, program.groups
    # Each device holds its share of the environments and their replay.
    needed //= devices
    print(
        f'Device replay: {needed / 2**30:.2f} GiB per device for {len(program.seeds)} seed(s) '
        f'x {envs} envs x {lay.steps:,} steps; {available / 2**30:.1f} GiB free on {device}.'
    )
    if needed > MEMORY_SHARE * available:
        per_item = needed / (len(program.seeds) * lay.envs * lay.steps)
        fits = int(MEMORY_SHARE * available / (per_item * len(program.seeds))) * devices
        raise SetupError(
            f'The device replay needs {needed / 2**30:.2f} GiB but only '
            f'{available / 2**30:.1f} GiB of {device} are free. Pass --replay.size '
            f'{max(fits - envs * lay.length, envs):.0f} or fewer, or fewer --run.seeds.'
        )


class Trainer:
    """Calls the device program, and turns what it returns into every seed's metrics."""

    def __init__(self, program, state, loggers, config, agent):
        self.program = program
        self.state = state
        self.loggers = loggers
        self.config = config
        self.agent = agent
        self.envs = config.run.envs
        self.chunk = config.run.device_chunk
        self.steps = 0  # steps of each environment
        self.updates = 0
        batch_steps = config.batch_size * config.batch_length
        self.ratio = clock.Ratio(config.run.train_ratio / batch_steps)
        self.sums = [{} for _ in loggers]
        self.count = 0
        self.scores = [[] for _ in loggers]
        self.fps = elements.FPS()
        self.train_fps = elements.FPS()

    def compile(self) -> None:
        """Compile the program ahead of the first call, saying how long it took."""
        print('Compiling the device loop...', flush=True)
        start = time.monotonic()
        self.program.compile(self.state, self.chunk)
        print(f'Compiled the device loop in {time.monotonic() - start:.1f} s.', flush=True)

    def advance(self) -> None:
        """One call: `run.device_chunk` iterations of every environment and seed."""
        import jax

        counts = self.program.schedule(self.ratio, self.steps, self.chunk)
        self.state, out = self.program(self.state, counts)
        out = jax.device_get(out)
        start = self.steps * self.envs
        self.steps += self.chunk
        self.updates += int(counts.sum())
        self.fps.step(self.chunk * self.envs)
        self.train_fps.step(int(counts.sum()) * self.config.batch_size * self.config.batch_length)
        episodes = out['episodes']
        for index, logger in enumerate(self.loggers):
            done = episodes['done'][:, index]
            for i, e in zip(*np.nonzero(done)):
                logger.step.load(start + i * self.envs + e + 1)
                score = float(episodes['score'][i, index, e])
                length = int(episodes['length'][i, index, e])
                logger.add({'score': score, 'length': length}, prefix='episode')
                self.scores[index].append(score)
            logger.step.load(self.steps * self.envs)
            for key, value in out['metrics'].items():
                self.sums[index][key] = self.sums[index].get(key, 0.0) + float(value[index])
        self.count += int(counts.sum())

    def log(self) -> None:
        """Add every seed's train metrics, throughput and replay size since the last log."""
        lay = self.program.layout
        items = self.envs * min(max(self.steps - lay.length + 1, 0), lay.items)
        for index, logger in enumerate(self.loggers):
            if self.count:
                means = {k: v / self.count for k, v in self.sums[index].items()}
                logger.add(means, prefix='train')
            logger.add({'fps/policy': self.fps.result(), 'fps/train': self.train_fps.result()})
            logger.add({'items': items, 'updates': self.updates}, prefix='replay')
            if index:
                logger.write()
            self.sums[index] = {}
        self.count = 0

    def status(self) -> tuple:
        """(updates, mean score of the last 10 episodes of seed 0) for the progress display."""
        scores = self.scores[0][-10:]
        return self.updates, (float(np.mean(scores)) if scores else None)

    def summary(self) -> str:
        """Episodes and the mean of the last 10 scores of every seed, for the last line."""
        parts = []
        for index, scores in enumerate(self.scores):
            mean = f'{np.mean(scores[-10:]):.2f}' if scores else 'none'
            parts.append(f'seed {index}: {len(scores)} episodes, last 10 mean {mean}')
        return '; '.join(parts)

    # What a seed's checkpoint holds.

    def seed_agent(self, host: dict, index: int) -> dict:
        """The agent entry of a seed's checkpoint, as `train` saves an agent."""
        params = {k: np.asarray(v[index]) for k, v in host['params'].items()}
        updates = int(host['updates'][index])
        actions = int(host['steps'][index])
        counters = {'updates': updates, 'batches': updates, 'actions': actions}
        return {'params': params, 'counters': counters}

    def seed_device(self, host: dict, index: int) -> dict:
        """The rest of a seed's state: replay, environments, carries, keys and the clocks."""
        import jax

        part = {k: host[k] for k in DEVICE_KEYS}
        leaves, _ = jax.tree.flatten(part)
        return {
            'leaves': [np.asarray(x[index]) for x in leaves],
            'steps': self.steps,
            'updates': self.updates,
            'ratio': self.ratio._prev,
        }

    def load(self, agents: list[dict], devices: list[dict]) -> None:
        """Put the seeds' checkpoints back on the device and continue from their step."""
        import jax

        state = jax.tree.map(np.array, jax.device_get(self.state))
        ours = {k: state[k] for k in DEVICE_KEYS}
        treedef = jax.tree.structure(ours)
        for index, (agent, device) in enumerate(zip(agents, devices)):
            missing = set(state['params']) - set(agent['params'])
            if missing:
                raise checkpoints.CheckpointError(
                    f'The checkpoint of seed {index} does not fit this model: it lacks '
                    f'{sorted(missing)[:5]}; use the config of that run or a new --logdir.'
                )
            for key, value in state['params'].items():
                value[index] = agent['params'][key]
            saved = [np.shape(x) for x in device['leaves']]
            if saved != [np.shape(x)[1:] for x in jax.tree.leaves(ours)]:
                raise checkpoints.CheckpointError(
                    f'The device state of seed {index} was saved with other settings (run.envs, '
                    'replay.size, the devices of jax.train_mesh); resume with those of that run.'
                )
            part = jax.tree.unflatten(treedef, device['leaves'])
            for key in DEVICE_KEYS:
                jax.tree.map(lambda x, y: x.__setitem__(index, y), state[key], part[key])
            state['updates'][index] = agent['counters']['updates']
            state['steps'][index] = device['steps']
        self.steps = int(devices[0]['steps'])
        self.updates = int(devices[0]['updates'])
        self.ratio._prev = devices[0]['ratio']
        for logger in self.loggers:
            logger.step.load(self.steps * self.envs)
        self.state = jax.device_put(state, self.program.shardings)


class Saves:
    """Every seed's checkpoint folder, saved together; a resume takes the newest step that
    every seed saved (a save cut off between seeds leaves the earlier seeds one ahead)."""

    def __init__(self, trainer: Trainer, runs: list[elements.Config]):
        self.trainer = trainer
        self.dirs = [elements.Path(c.logdir) / 'ckpt' for c in runs]
        self.keep = runs[0].run.keep_checkpoints

    def where(self) -> str:
        """The checkpoint folder, or the pattern of the seeds' folders."""
        if len(self.dirs) == 1:
            return str(self.dirs[0])
        return str(self.dirs[0]).replace('seed0', 'seed*', 1)

    def save(self) -> None:
        """Write a checkpoint of every seed."""
        import jax

        host = jax.device_get(self.trainer.state)
        step = elements.Counter(self.trainer.steps * self.trainer.envs)
        for index, directory in enumerate(self.dirs):
            checkpoint = checkpoints.Checkpoint(directory, self.keep)
            checkpoint.step = step
            checkpoint.agent = Fixed(self.trainer.seed_agent(host, index))
            checkpoint.device = Fixed(self.trainer.seed_device(host, index))
            checkpoint.save()

    def restore(self) -> None:
        """Load the newest step every seed saved, or save the initial state when none did."""
        for directory in self.dirs:
            count = checkpoints.remove_temporary(directory)
            if count:
                print(f'Removed {count} temporary file(s) of an interrupted write in {directory}.')
        found = [self._steps(d) for d in self.dirs]
        if not any(found):
            print('Did not find any checkpoint.')
            self.save()
            return
        common = set(found[0]).intersection(*found[1:])
        if not common:
            raise checkpoints.CheckpointError(
                f'The seeds of this logdir have no checkpoint of the same step ({found}); '
                'use a new --logdir.'
            )
        step = max(common)
        agents, devices = [], []
        for index, directory in enumerate(self.dirs):
            folder = found[index][step]
            data = checkpoints.read(folder, ['step', 'agent', 'device'])
            print(f'Loading checkpoint: {folder}')
            agents.append(data['agent'])
            devices.append(data['device'])
        self.trainer.load(agents, devices)

    def _steps(self, directory) -> dict:
        """{step: folder} of the complete checkpoints of one seed."""
        steps = {}
        for folder in checkpoints.complete(directory):
            step = checkpoints.peek(folder, 'step')
            if step is not None and 'device.pkl' in {p.name for p in folder.glob('*.pkl')}:
                steps.setdefault(int(step), folder)
        return steps


class Fixed:
    """A checkpoint entry whose data is already taken."""

    def __init__(self, data):
        self.data = data

    def save(self):
        return self.data

    def load(self, data):
        self.data = data
