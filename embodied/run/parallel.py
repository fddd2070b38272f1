"""The `parallel` script: agent, replay, logger and envs as separate roles.

Roles talk over portal RPC. The agent role acts (a batching server at `run.actor_addr`) and
learns (from the replay role at `run.replay_addr`); every role sends metrics to the logger role
at `run.logger_addr`, which owns the env step counter. The agent role is a thread of the main
process (a process of its own with `run.agent_process`); the logger, the replay (unless
`run.remote_replay`) and each env (unless `run.remote_envs`) are `portal.Process`es.

Stopping: the actor learns the env step from the logger's replies. Once it reaches `run.steps`,
or once SIGINT or SIGTERM reached the main process, the learner finishes its update, saves its
checkpoint and ends, the actor tells every env to stop in its replies, then the agent role asks
the replay and logger roles to save and exit. Every process therefore ends by itself. The role
processes ignore both signals (a Ctrl-C reaches the whole process group); a second signal to the
main process kills every role and ends the run at once without saving. A role that dies makes
the supervisor kill all others and end the run with exit status 1 and a message naming the role;
the role's own traceback is printed by its process.

The roles started separately (`parallel_env`, `parallel_envs`, `parallel_replay`) need real
addresses: `{auto}` (a free local port) only works when one command starts all roles.
"""

import functools
import os
import signal
import sys
import time

import elements
import portal
import psutil

from . import agent_role, checkpoints, env_role, interrupt, logger_role, replay_role

ADDRESSES = ('actor_addr', 'replay_addr', 'logger_addr')
# Seconds the supervisor waits for the other roles to exit after the agent role has finished.
SHUTDOWN_GRACE = 60
# Seconds to wait for killed processes to be gone: a SIGKILLed JAX process with a large heap
# can take a while to release its memory on a loaded machine.
REAP_TIMEOUT = 20
# Seconds portal waits between its SIGTERM and its SIGKILL when killing a role. The roles of a
# `parallel` run ignore SIGTERM, so waiting longer gains nothing.
KILL_WAIT = 0.1


class RoleError(RuntimeError):
    """A role exited with a non-zero code; `name` and `code` say which and how."""

    def __init__(self, name: str, code: int):
        super().__init__(
            f"'{name}' crashed with exit code {code}; see its output above for the error "
            '(a negative code is the signal that killed it).'
        )
        self.name = name
        self.code = code


def parallel(config: elements.Config, make_agent) -> None:
    """Start every role of the run in this machine and wait until the run ends.

    `make_agent(config)` builds the agent in the agent role.
    """
    config = resolve_addresses(config)
    if config.run.from_checkpoint:
        # Fail before starting any role when there is nothing to load.
        checkpoints.resolve(config.run.from_checkpoint)
    print('Parallel roles: ' + ', '.join(f'{k}={config.run[k]}' for k in ADDRESSES))
    # Every process portal starts from here on (roles, the actor's batcher) ignores the signals.
    portal.initfn(interrupt.shield, call_now=False)
    # Set by the first signal, which makes the agent role stop the run as if `run.steps` were
    # reached, and by the agent role once it has stopped the run, which makes envs that are
    # still waiting to connect to the actor give up.
    ending = portal.contextlib.context.mp.Event()
    quit_ = _Quit()
    workers = []
    try:
        with interrupt.Interrupt(callback=lambda signum: quit_.arm(ending)):
            # The roles save on a signal from here on, so it no longer ends the process at once.
            interrupt.started()
            bind = functools.partial
            workers.append(portal.Process(bind(logger_role.run, config), name='logger'))
            if not config.run.remote_replay:
                workers.append(portal.Process(bind(replay_role.run, config), name='replay'))
            if not config.run.remote_envs:
                workers += env_workers(config, ending)
            # The agent starts last: an error in a portal thread of this process makes portal
            # kill this process's children and exit at once, and a role still being spawned
            # at that moment would be left running.
            worker = portal.Process if config.run.agent_process else portal.Thread
            agent = worker(bind(agent_role.run, config, make_agent), ending, name='agent')
            workers.append(agent)
            supervise(workers, leader=agent)
    except RoleError as e:
        # The agent role has already said what the user's mistake was, in one line.
        code = 2 if e.code == agent_role.USER_ERROR else 1
        if code == 1:
            print(str(e), file=sys.stderr, flush=True)
        if isinstance(agent, portal.Thread) and agent.running:
            _exit_now(code)
        sys.exit(code)
    except _QuitNow:
        print(f'Received {quit_.signame} again: killing every role without saving.')
        kill(workers)
        _exit_now(-quit_.signum)
    print('Parallel run finished.')


class _QuitNow(BaseException):
    """Raised in the main thread by the second signal."""


class _Quit:
    """After the first signal: tell the agent role to stop, and let a second signal quit."""

    def __init__(self):
        self.signum = None

    @property
    def signame(self) -> str:
        return signal.Signals(self.signum).name

    def arm(self, ending) -> None:
        ending.set()
        for signum in interrupt.SIGNALS:
            signal.signal(signum, self._again)

    def _again(self, signum, frame):
        self.signum = signum
        raise _QuitNow()


def _exit_now(code: int) -> None:
    """End the process at once, without the interpreter's shutdown.

    The agent role thread, when killed inside native code (e.g. while XLA compiles), lives on
    until that call returns, and a normal shutdown with it still running aborts the process
    (SIGABRT); the roles are already gone, so nothing is lost by skipping it. A negative code
    ends the process by that signal.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    if code < 0:
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    os._exit(code)


def parallel_env(config: elements.Config, make_agent=None) -> int:
    """Run one env (started on its own, e.g. one per cluster replica) until the run ends.

    The env id is the replica index; ids from `run.envs` on are eval envs. No agent here.
    """
    require_addresses(config, ('actor_addr', 'logger_addr'), 'parallel_env')
    is_eval = config.replica >= config.run.envs
    return env_role.run(config, config.replica, is_eval)


def parallel_envs(config: elements.Config, make_agent=None) -> None:
    """Run `run.envs` train envs and `run.eval_envs` eval envs as processes of this machine."""
    require_addresses(config, ('actor_addr', 'logger_addr'), 'parallel_envs')
    supervise(env_workers(config), leader=None)


def parallel_replay(config: elements.Config, make_agent=None) -> None:
    """Run the replay role on its own until the agent role tells it to stop."""
    require_addresses(config, ('replay_addr', 'logger_addr'), 'parallel_replay')
    worker = portal.Process(functools.partial(replay_role.run, config), name='replay')
    supervise([worker], leader=None)


def resolve_addresses(config: elements.Config) -> elements.Config:
    """Resolve `actor_batch <= 0` and `{auto}` ports for a run that starts all roles here."""
    run = config.run
    actor_batch = run.actor_batch if run.actor_batch > 0 else max(1, run.envs // 2)
    if actor_batch > run.envs:
        raise ValueError(
            f'run.actor_batch={actor_batch} exceeds run.envs={run.envs}: the actor would wait '
            'forever for a full batch. Use at most run.envs, or -1 for envs // 2.'
        )
    updates = {'run.actor_batch': actor_batch}
    for key in ADDRESSES:
        if '{auto}' in run[key]:
            updates[f'run.{key}'] = run[key].format(auto=portal.free_port())
    return config.update(updates)


def require_addresses(config: elements.Config, keys: tuple, script: str) -> None:
    """Raise when a role started on its own was given an `{auto}` address."""
    for key in keys:
        if '{auto}' in config.run[key]:
            raise ValueError(
                f"run.{key} is '{config.run[key]}', but script {script} runs apart from the "
                'other roles and cannot guess their free port. Pass the address printed by the '
                f'parallel run, e.g. --run.{key} host:port.'
            )


def env_workers(config: elements.Config, ending=None) -> list:
    """One process per env: ids 0..envs-1 train, envs..envs+eval_envs-1 evaluate.

    `ending`, a multiprocessing event, lets an env that has not reached the actor yet stop
    once the run is ending.
    """
    workers = []
    for env_id in range(config.run.envs + config.run.eval_envs):
        is_eval = env_id >= config.run.envs
        fn = functools.partial(env_role.run, config, env_id, is_eval)
        workers.append(portal.Process(fn, ending, name=f'env{env_id}'))
    return workers


def supervise(workers, leader=None, grace: float = SHUTDOWN_GRACE, poll: float = 0.1) -> None:
    """Start the workers and wait until all exit; stop everything when one fails.

    This is `portal.run` plus what it lacks: once `leader` has exited cleanly, the others get
    `grace` seconds to finish before they are killed, and a failure raises only after the
    killed processes are gone. A worker that exits with a non-zero code makes this kill all
    workers (with their child processes) and raise RoleError naming it.
    """
    for worker in workers:
        if not worker.started:
            worker.start()
    finished = None
    while True:
        time.sleep(poll)
        failed = [w for w in workers if w.exitcode not in (None, 0)]
        if failed:
            time.sleep(poll)  # Let the failed role finish printing its traceback.
            name, code = failed[0].name, failed[0].exitcode
            print(f"Stopping all roles because '{name}' exited with code {code}.", flush=True)
            kill(workers)
            raise RoleError(name, code)
        if all(w.exitcode == 0 for w in workers):
            return
        if leader is not None and leader.exitcode == 0:
            finished = finished or time.monotonic()
            if time.monotonic() - finished > grace:
                left = [w.name for w in workers if w.exitcode is None]
                print(f'Killing roles still running {grace}s after the agent finished: {left}')
                kill(workers)
                return


def kill(workers, timeout: float = REAP_TIMEOUT) -> None:
    """Kill the running workers with their child processes; wait until all are gone.

    portal kills each worker's process tree. The process ids are taken first, because a killed
    worker's children can no longer be found from it; any of them still alive afterwards (e.g.
    when a kill raised) is killed again here. A thread worker only loses its child processes:
    an exception injected into it can land anywhere, even in a garbage-collection callback of
    JAX that prints it as a traceback, and the callers end the process right after anyway.
    """
    running = [w for w in workers if w.started and w.exitcode is None]
    threads = [w for w in running if isinstance(w, portal.Thread)]
    procs = [w for w in running if isinstance(w, portal.Process)]
    procs += [c for w in threads for c in _processes_of(w)]
    running = [w for w in procs if w.exitcode is None]
    pids = [pid for w in procs for pid in _tree(_pid(w))]
    for worker in running:
        try:
            if worker.pid is None:
                # Interrupted while starting: portal's kill() would take the children of this
                # process for the worker's, so end the worker process alone.
                worker.process.kill()
            else:
                worker.kill(KILL_WAIT)
        except Exception as e:  # Best effort: keep killing the others.
            print(f"Could not kill '{worker.name}': {e}")
    for pid in pids:
        if portal.proc_alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + timeout
    for worker in procs:
        worker.join(max(0.0, deadline - time.monotonic()))  # reaps the direct child
    left = [pid for pid in pids if portal.proc_alive(pid)]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [pid for pid in left if portal.proc_alive(pid)]
    if left:
        print(f'Processes still running {timeout}s after being killed: {left}')


def _processes_of(thread: portal.Thread) -> list:
    """The processes a portal thread started, directly or through the threads it started."""
    found = []
    for child in portal.contextlib.context.children(thread.thread):
        if isinstance(child, portal.Process):
            found.append(child)
        else:
            found += _processes_of(child)
    return found


def _pid(worker: portal.Process) -> int | None:
    # portal sets `pid` only once the child has answered; the process may exist before that.
    return worker.pid or worker.process.pid


def _tree(pid: int | None) -> list[int]:
    if pid is None:
        return []
    try:
        proc = psutil.Process(pid)
        return [pid] + [child.pid for child in proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []
