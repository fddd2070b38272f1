"""Steps a batch of environments with a policy and hands every transition to callbacks."""

import functools
import signal
import time
import traceback
import weakref

import elements
import numpy as np
import portal

# How often a parent blocked on a worker checks that the worker process is still alive.
_POLL_SECONDS = 0.05
# Seconds the closing workers get, together, to close their envs and exit before they are
# killed with their children.
_CLOSE_SECONDS = 5


class WorkerError(RuntimeError):
    """An environment worker process raised or died; `index` names the env."""

    def __init__(self, index: int, message: str, remote_traceback: str | None = None):
        super().__init__(message)
        self.index = index
        self.remote_traceback = remote_traceback


class Driver:
    """Steps `len(make_env_fns)` environments in lockstep with one batched policy.

    With `parallel=True` every env lives in its own `portal.Process`, commanded over a pipe; an
    env that raises there (or a worker process that dies) makes the driver close all workers and
    raise `WorkerError` naming the env index and carrying the worker's traceback. Otherwise the
    envs are created and stepped in this process. Workers are ordinary (not daemon) processes,
    so an env may start processes of its own; closing the driver ends each worker with its whole
    process tree. Workers ignore SIGINT and SIGTERM: the process that owns the driver decides
    when to stop and closes it. A step that hangs forever is not detected (there is no step
    timeout), a dead worker is.

    One driver step sends each env its pending action, stacks the observations, checks that no
    float observation holds NaN (the error names the env), splits off `log/` keys, calls
    `policy(carry, obs) -> (carry, acts, outs)`, zeroes the actions of envs whose observation
    `is_last`, stores `{**acts, 'reset': is_last}` as the next pending actions, and then, for
    each env in index order, calls every step callback (in registration order) with that env's
    transition `obs | acts | outs | logs` (no `reset` key) and the env index.
    """

    def __init__(self, make_env_fns, parallel: bool = True):
        if not make_env_fns:
            raise ValueError('Driver needs at least one env factory but got an empty list.')
        self.length = len(make_env_fns)
        self.parallel = parallel
        self._step_callbacks = []
        self._closed = False
        if parallel:
            self._workers = _Workers(make_env_fns)
            self._finalizer = weakref.finalize(self, self._workers.close)
            self.obs_space, self.act_space = self._workers.spaces(0)
        else:
            self._envs = [fn() for fn in make_env_fns]
            self.obs_space = self._envs[0].obs_space
            self.act_space = self._envs[0].act_space
        if 'reset' not in self.act_space:
            raise ValueError(
                f'The action space of env 0 has keys {sorted(self.act_space)} but must '
                "contain 'reset'; every env must accept a reset action."
            )
        self.reset()

    @property
    def pids(self) -> list[int]:
        """Process ids of the env workers (empty when not parallel)."""
        return self._workers.pids if self.parallel else []

    def reset(self, init_policy=None) -> None:
        """Request a reset of every env and restart the policy carry."""
        self.acts = {
            k: np.zeros((self.length,) + v.shape, v.dtype) for k, v in self.act_space.items()
        }
        self.acts['reset'] = np.ones(self.length, bool)
        self.carry = init_policy(self.length) if init_policy else None

    def on_step(self, callback) -> None:
        """Register `callback(transition, env_index)`, called once per env per driver step."""
        self._step_callbacks.append(callback)

    def __call__(self, policy, steps: int = 0, episodes: int = 0) -> None:
        """Run driver steps until at least `steps` env steps or `episodes` episodes are done."""
        if self._closed:
            raise RuntimeError('The driver was closed; create a new Driver to keep stepping.')
        step, episode = 0, 0
        while step < steps or episode < episodes:
            step, episode = self._step(policy, step, episode)

    def close(self) -> None:
        """Close every env and end the worker processes."""
        if self._closed:
            return
        self._closed = True
        if self.parallel:
            self._finalizer()
        else:
            for env in self._envs:
                env.close()

    def _step(self, policy, step, episode):
        acts = [{k: v[i] for k, v in self.acts.items()} for i in range(self.length)]
        if self.parallel:
            obs = self._workers.step(acts)
        else:
            obs = []
            for index, (env, act) in enumerate(zip(self._envs, acts)):
                try:
                    obs.append(env.step(act))
                except Exception as e:
                    e.add_note(f'Raised by env {index} of the driver (serial mode).')
                    raise
        self._check_keys(obs)
        for index, ob in enumerate(obs):
            check_nan(ob, index)
        obs = {k: np.stack([np.asarray(x[k]) for x in obs]) for k in obs[0]}
        logs = {k: v for k, v in obs.items() if k.startswith('log/')}
        obs = {k: v for k, v in obs.items() if not k.startswith('log/')}
        self.carry, acts, outs = policy(self.carry, obs)
        acts = {k: np.asarray(v) for k, v in acts.items()}
        outs = elements.tree.map(np.asarray, dict(outs))
        self._check_outputs(acts, outs)
        is_last = obs['is_last'].astype(bool)
        if is_last.any():
            acts = {k: zero_where(v, is_last) for k, v in acts.items()}
        self.acts = {**acts, 'reset': is_last.copy()}
        trans = {**obs, **acts, **outs, **logs}
        for index in range(self.length):
            tran = elements.tree.map(lambda x: x[index], trans)
            for callback in self._step_callbacks:
                callback(tran, index)
        return step + self.length, episode + int(is_last.sum())

    def _check_keys(self, obs):
        keys = set(obs[0])
        for index, other in enumerate(obs[1:], 1):
            if set(other) != keys:
                raise ValueError(
                    f'Observation keys of env {index} differ from those of env 0: only in '
                    f'env 0 {sorted(keys - set(other))}, only in env {index} '
                    f'{sorted(set(other) - keys)}; all envs of a driver must return the '
                    'same keys.'
                )

    def _check_outputs(self, acts, outs):
        if 'reset' in acts:
            raise ValueError(
                "The policy returned a 'reset' action; the driver sets it from is_last, so "
                'drop it from the returned actions.'
            )
        shared = sorted(set(acts) & set(outs))
        if shared:
            raise ValueError(
                f'The policy returned {shared} both as actions and as outputs; use distinct keys.'
            )
        for key, value in acts.items():
            if value.shape[:1] != (self.length,):
                raise ValueError(
                    f'The policy action {key!r} has shape {value.shape} but needs a leading '
                    f'batch axis of {self.length} (one row per env).'
                )


def check_nan(obs: dict, index: int) -> None:
    """Raise ValueError naming env `index` when a float observation (not `log/`) holds NaN."""
    for key, value in obs.items():
        value = np.asarray(value)
        if key.startswith('log/') or not np.issubdtype(value.dtype, np.floating):
            continue
        if np.isnan(value).any():
            raise ValueError(
                f'Observation {key!r} of env {index} contains NaN; the environment produced an '
                'invalid observation (e.g. an unstable simulation or a bad preprocessing step).'
            )


def zero_where(value: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """`value` with the rows where `mask` is set replaced by zeros."""
    mask = np.asarray(mask, bool).reshape((-1,) + (1,) * (np.ndim(value) - 1))
    return np.where(mask, np.zeros_like(value), value)


class _Workers:
    """One `portal.Process` per env, each serving commands over a pipe.

    portal starts the processes (spawn), ends a worker together with every process its env
    started, and kills the workers still running when this process exits. What it lacks is the
    request protocol, so this class adds the pipes and turns a worker's error or death into a
    `WorkerError` naming the env.
    """

    def __init__(self, make_env_fns):
        context = portal.contextlib.context.mp
        self.conns, self.procs = [], []
        for index, fn in enumerate(make_env_fns):
            parent, child = context.Pipe()
            # portal cloudpickles the target, so lambdas and closures work as env factories.
            target = functools.partial(_worker, fn)
            proc = portal.Process(target, child, name=f'env{index}', start=True)
            # Drop our copy of the child's end so the worker dying shows up as EOF.
            child.close()
            self.conns.append(parent)
            self.procs.append(proc)
        self.closed = False

    @property
    def pids(self) -> list[int]:
        """Process ids of the workers."""
        return [proc.pid for proc in self.procs]

    def spaces(self, index: int) -> tuple[dict, dict]:
        """Observation and action space of one env."""
        self._send(index, ('spaces', None))
        return self._receive(index)

    def step(self, acts: list[dict]) -> list[dict]:
        """Send each env its action (all first, so they step concurrently), then collect."""
        for index, act in enumerate(acts):
            self._send(index, ('step', act))
        return [self._receive(index) for index in range(len(acts))]

    def close(self) -> None:
        """Ask the workers to exit, then kill any that do not, with their child processes."""
        if self.closed:
            return
        self.closed = True
        for conn in self.conns:
            try:
                conn.send(('close', None))
            except (OSError, ValueError):
                pass  # Worker already gone.
        deadline = time.monotonic() + _CLOSE_SECONDS
        for proc in self.procs:
            proc.join(max(0.0, deadline - time.monotonic()))
        for proc in self.procs:
            if proc.exitcode is None:
                proc.kill()
            # Reap the process so that it leaves no zombie behind.
            proc.join(1)
        for conn in self.conns:
            conn.close()

    def _send(self, index, message):
        self._check_open()
        try:
            self.conns[index].send(message)
        except (OSError, ValueError):
            self._died(index)

    def _receive(self, index):
        self._check_open()
        conn, proc = self.conns[index], self.procs[index]
        while not conn.poll(_POLL_SECONDS):
            # Data may arrive just before the process exits, so check the pipe once more.
            if proc.exitcode is not None and not conn.poll(0):
                self._died(index)
        try:
            status, payload = conn.recv()
        except (EOFError, OSError):
            self._died(index)
        if status == 'error':
            self.close()
            raise WorkerError(
                index,
                f'Env {index} raised an exception in its worker process; the driver closed '
                f'all workers. Original traceback:\n{payload}',
                payload,
            )
        return payload

    def _died(self, index):
        proc = self.procs[index]
        proc.join(1)
        code = proc.exitcode
        self.close()
        raise WorkerError(
            index,
            f'The worker process of env {index} (pid {proc.pid}) died with exit code {code} '
            'without reporting an error (killed, out of memory, or a crash in native code); '
            'the driver closed all workers.',
        )

    def _check_open(self):
        if self.closed:
            raise RuntimeError('The env workers were closed; create a new Driver.')


def _worker(make_env, conn):
    # A Ctrl-C in a terminal reaches the whole process group. The parent decides when to stop
    # (often after a last update and save) and then closes the workers, so they ignore it.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    env = None
    try:
        env = make_env()
        while True:
            try:
                command, arg = conn.recv()
            except EOFError:
                break  # The parent is gone.
            if command == 'step':
                conn.send(('ok', env.step(arg)))
            elif command == 'spaces':
                conn.send(('ok', (env.obs_space, env.act_space)))
            elif command == 'close':
                break
            else:
                raise ValueError(f'Unknown worker command {command!r}.')
    except Exception:
        try:
            conn.send(('error', traceback.format_exc()))
        except (OSError, ValueError):
            pass  # The parent is gone; nobody to tell.
    finally:
        if env is not None:
            try:
                env.close()
            except Exception:
                pass  # Closing is best effort while shutting down.
        conn.close()
    return 0
