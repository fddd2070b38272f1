"""Agent role of the parallel script: a policy server and a learner sharing one agent."""

import functools
import sys
import threading
import time

import elements
import numpy as np
import portal

from ..core import clock
from ..core.base import SetupError
from ..core.driver import zero_where
from . import checkpoints, remote

# The exit code of a role stopped by a user's mistake, as the command line uses it.
USER_ERROR = 2


def run(config: elements.Config, make_agent, ending=None) -> int:
    """Act and learn until the env step reaches `run.steps`, then stop the other roles.

    The policy server serves only once the learner has restored its checkpoint. When the server
    learns from the logger that `run.steps` is reached, or sees `ending` (a multiprocessing
    event the main process sets on SIGINT or SIGTERM), the learner finishes its update, saves
    and ends, the server tells the envs to stop, and then the replay and logger roles are asked
    to save and exit. This role sets `ending` itself once the server has closed, so that envs
    still waiting to connect stop too.
    """
    try:
        agent = make_agent(config)
    except (checkpoints.CheckpointError, SetupError) as e:
        # A user's mistake (e.g. a checkpoint of other shapes): one line, not a role crash.
        print(f'dreamerv3: error: {e}', file=sys.stderr, flush=True)
        return USER_ERROR
    stop = threading.Event()
    ready = threading.Event()
    server = PolicyServer(agent, config, stop, ready, ending)
    learner = RemoteLearner(agent, config, stop, ready)
    server_thread = portal.Thread(server.run, name='actor', start=True)
    learner_thread = portal.Thread(learner.run, name='learner', start=True)
    learner_thread.join()
    server.finish(timeout=remote.SHUTDOWN_WAIT)
    server_thread.join()
    if ending is not None:
        ending.set()
    for name in ('replay', 'logger'):
        client = portal.Client(config.run[f'{name}_addr'], f'AgentStops{name.title()}')
        try:
            client.stop().result(timeout=remote.STOP_TIMEOUT)
        except TimeoutError:
            print(
                f'The {name} role did not confirm its final save within '
                f'{remote.STOP_TIMEOUT} seconds.'
            )
        finally:
            client.close()
    return 0


def check_batcher(server: portal.BatchServer) -> None:
    """Raise when the batching process of a portal BatchServer has died.

    The envs only talk to that process, so without this check its crash (e.g. the actor port
    taken by another program) would leave the run waiting forever.
    """
    batcher = getattr(server, 'batcher', None)
    code = getattr(batcher, 'exitcode', None)
    if code not in (None, 0):
        raise RuntimeError(
            f'The actor batcher process exited with code {code}; see its error above. If the '
            'port of run.actor_addr was taken, pick a free one.'
        )


class PolicyServer:
    """Batched policy server for the env roles; forwards their transitions to replay and logger."""

    def __init__(self, agent, config, stop, ready, ending=None):
        self.agent = agent
        self.config = config
        self.stop = stop
        self.ready = ready
        self.ending = ending
        self.closing = threading.Event()
        self.lock = threading.Lock()
        self.carries = {}  # env id -> policy carry of that env
        self.initial = {}  # batch size -> initial carry entry (or shared carry)
        self.told = set()  # env ids told that the run has ended
        self.expected = set(range(config.run.envs + config.run.eval_envs))
        self.step = None
        self.fps = elements.FPS()
        self.replay = None
        self.logger = None

    def run(self) -> None:
        """Serve `act` (train envs) and `act_eval` (eval envs) until `finish()`."""
        self.ready.wait()
        config = self.config
        self.replay = portal.Client(config.run.replay_addr, 'ActorReplay', maxinflight=8)
        self.logger = portal.Client(config.run.logger_addr, 'ActorLogger', maxinflight=8)
        server = portal.BatchServer(
            config.run.actor_addr, name='Actor', workers=config.run.actor_threads
        )
        server.bind(
            'act',
            functools.partial(self.act, mode='train'),
            self.post,
            batch=config.run.actor_batch,
            workers=config.run.actor_threads,
        )
        if config.run.eval_envs > 0:
            # Eval envs act with mode='eval' (the reference acted on them in train mode), so
            # they get their own method.
            server.bind(
                'act_eval',
                functools.partial(self.act, mode='eval'),
                self.post,
                batch=min(config.run.actor_batch, config.run.eval_envs),
                workers=config.run.actor_threads,
            )
        server.bind('stopping', self.stopping)
        server.start(block=False)
        should_log = clock.LocalClock(config.run.log_every)
        while not self.closing.wait(0.1):
            check_batcher(server)
            if self.ending is not None and self.ending.is_set() and not self.stop.is_set():
                self.stop.set()  # The main process announced the stop when the signal came.
            if should_log():
                metrics = {'fps/policy': self.fps.result(), 'parallel/ep_states': len(self.carries)}
                metrics.update(remote.prefixed(server.stats(), 'server/actor'))
                metrics.update(remote.prefixed(self.replay.stats(), 'client/actor_replay'))
                metrics.update(remote.prefixed(self.logger.stats(), 'client/actor_logger'))
                self.logger.add(metrics)
        server.close(timeout=remote.SHUTDOWN_WAIT)
        self.replay.close()
        self.logger.close()

    def act(self, obs: dict, mode: str) -> tuple[dict, dict]:
        """Policy step for a batch of env observations; returns (reply, transitions)."""
        obs = dict(obs)
        envids = [int(i) for i in obs.pop('envid')]
        is_eval = obs.pop('is_eval')
        logs = {k: obs.pop(k) for k in list(obs) if k.startswith('log/')}
        batch = len(envids)
        if batch not in self.initial:
            self.initial[batch] = self.agent.init_policy(batch)
        initial = self.initial[batch]
        # An agent whose carry is a list with one entry per env keeps a carry for each env id.
        per_env = isinstance(initial, list) and len(initial) == batch
        if per_env:
            with self.lock:
                carry = [self.carries.get(i, initial[0]) for i in envids]
        else:
            carry = initial
        carry, acts, outs = self.agent.policy(carry, obs, mode=mode)
        if per_env:
            with self.lock:
                self.carries.update(zip(envids, carry))
        is_last = np.asarray(obs['is_last'], bool)
        # The next step resets these envs, so the action is irrelevant; zero it like the Driver.
        acts = {k: zero_where(np.asarray(v), is_last) for k, v in acts.items()}
        stopping = self.stop.is_set()
        if stopping:
            with self.lock:
                self.told.update(envids)
        self.fps.step(batch)
        reply = {**acts, 'reset': is_last, 'stop': np.full(batch, stopping)}
        tran = {**obs, **acts, **remote.contiguous(dict(outs)), **logs}
        tran['envid'] = np.asarray(envids, np.int32)
        tran['is_eval'] = np.asarray(is_eval, bool)
        return remote.contiguous(reply), tran

    def post(self, tran: dict) -> None:
        """After replying: send the transitions to the replay (without log/ keys) and logger."""
        self.replay.add_batch({k: v for k, v in tran.items() if not k.startswith('log/')})
        self.logger.tran(tran).add_callback(self._on_step)

    def stopping(self, env_id: int) -> bool:
        """Whether the run has ended; an env asks while its action is pending."""
        if self.stop.is_set():
            with self.lock:
                self.told.add(int(env_id))
        return bool(self.stop.is_set())

    def finish(self, timeout: float) -> None:
        """Close the server once every env was told to stop, or after `timeout` seconds."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            with self.lock:
                if self.expected <= self.told:
                    break
            time.sleep(0.05)
        self.closing.set()

    def _on_step(self, future):
        if future.error() is not None:
            return  # The logger role failed; its process exit stops the run.
        self.step = int(future.result())
        if self.step >= self.config.run.steps and not self.stop.is_set():
            total = int(self.config.run.steps)
            print(f'Reached {self.step} of {total} env steps; stopping the run.')
            self.stop.set()


class RemoteLearner:
    """Trains on batches from the replay role, reports, logs and saves on clocks."""

    def __init__(self, agent, config, stop, ready):
        self.agent = agent
        self.config = config
        self.stop = stop
        self.ready = ready
        self.agg = elements.Agg()
        self.fps = elements.FPS()
        self.usage = elements.Usage(**config.run.usage)

    def run(self) -> None:
        """Restore the checkpoint, then train until the run stops; saves at the end."""
        config, agent = self.config, self.agent
        logdir = elements.Path(config.logdir)
        run = config.run
        checkpoint = checkpoints.Checkpoint(logdir / 'ckpt' / 'agent', run.keep_checkpoints)
        checkpoint.agent = agent
        if run.from_checkpoint:
            checkpoints.load_agent(agent, run.from_checkpoint, run.from_checkpoint_regex)
        checkpoints.load_or_save(checkpoint, logdir / 'ckpt' / 'agent')
        self.ready.set()

        client = lambda name: portal.Client(run.replay_addr, f'Learner{name}', maxinflight=8)
        clients = {name: client(name) for name in ('Train', 'Report', 'Eval', 'Update')}
        self.logger = portal.Client(config.run.logger_addr, 'LearnerLogger', maxinflight=8)
        sources = {
            'train': remote.RemoteStream(clients['Train'], 'sample_batch_train', self.stop),
            'report': remote.RemoteStream(clients['Report'], 'sample_batch_report', self.stop),
        }
        if config.run.eval_envs > 0:
            sources['eval'] = remote.RemoteStream(clients['Eval'], 'sample_batch_eval', self.stop)
        self.sources = sources
        self.streams = {k: iter(agent.stream(v)) for k, v in sources.items()}
        self.clients = clients

        should_report = clock.LocalClock(config.run.report_every)
        should_log = clock.LocalClock(config.run.log_every)
        should_save = clock.LocalClock(config.run.save_every)
        carry = agent.init_train(config.batch_size)
        batch_steps = config.batch_size * config.batch_length
        while not self.stop.is_set():
            try:
                with elements.timer.section('stream_next'):
                    batch = next(self.streams['train'])
            except StopIteration:
                break
            carry, outs, metrics = agent.train(carry, batch)
            self.fps.step(batch_steps)
            if 'replay' in outs:
                clients['Update'].update(remote.contiguous(outs['replay']))
            self.agg.add(metrics, prefix='train')
            if should_report():
                self.report()
            if should_log():
                self.log()
            if should_save():
                checkpoint.save()
        checkpoint.save()
        self.log()
        for c in (*clients.values(), self.logger):
            c.close()

    def report(self) -> None:
        """Report metrics on train (and eval) replay batches, each from a fresh carry."""
        for name, prefix in (('report', 'report'), ('eval', 'eval')):
            if name not in self.sources or not self.sources[name].ready():
                continue  # Skipped until that replay has sent a batch.
            agg = elements.Agg()
            carry = self.agent.init_report(self.config.batch_size)
            try:
                for _ in range(self.config.consec_report * self.config.run.report_batches):
                    carry, metrics = self.agent.report(carry, next(self.streams[name]))
                    agg.add(metrics)
            except StopIteration:
                return
            self.logger.add(remote.contiguous_metrics(agg.result(prefix=prefix)))

    def log(self) -> None:
        """Send the learner's metrics to the logger role."""
        metrics = remote.contiguous_metrics(self.agg.result())
        metrics['fps/train'] = self.fps.result()
        metrics['timer/agent'] = remote.timer_summary()
        metrics.update(remote.prefixed(self.usage.stats(), 'usage/agent'))
        for name, c in self.clients.items():
            metrics.update(remote.prefixed(c.stats(), f'client/learner_{name.lower()}'))
        self.logger.add(metrics)
