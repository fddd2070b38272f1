"""The `parallel` script: agent, replay, logger and envs as separate roles (spec 1.5, 9.5).

Roles talk over portal RPC. The agent role acts (a batching server at `run.actor_addr`) and
learns (from the replay role at `run.replay_addr`); every role sends metrics to the logger role
at `run.logger_addr`, which owns the env step counter.

Stopping (spec §14.32): the actor learns the env step from the logger's replies. Once it reaches
`run.steps`, the learner saves its checkpoint and ends, the actor tells every env to stop in its
replies, then the agent role asks the replay and logger roles to save and exit. Every process
therefore ends by itself. A role that dies makes the supervisor stop all others and raise an
error that names the role; the role's own traceback is printed by its process.

The roles started separately (`parallel_env`, `parallel_envs`, `parallel_replay`) need real
addresses: `{auto}` (a free local port) only works when one command starts all roles.
"""

import functools
import time

import portal
import psutil

from . import checkpoints, env_role, logger_role, parallel_agent, replay_role

ADDRESSES = ('actor_addr', 'replay_addr', 'logger_addr')
# Seconds the supervisor waits for the other roles to exit after the agent role has finished.
SHUTDOWN_GRACE = 60
# Seconds to wait for killed processes to be gone: a SIGKILLed JAX process with a large heap
# can take a while to release its memory on a loaded machine.
REAP_TIMEOUT = 20


def parallel(make_agent, make_replay, make_env, make_stream, make_logger, args):
    """Start every role of the run in this machine and wait until the run ends."""
    args = combined_args(args)
    if args.from_checkpoint:
        # Fail before starting any role when there is nothing to load.
        checkpoints.resolve(args.from_checkpoint)
    print('Parallel roles: ' + ', '.join(f'{k}={args[k]}' for k in ADDRESSES))
    bind = functools.partial
    agent_fn = bind(parallel_agent.run, make_agent, args)
    if args.agent_process:
        agent = portal.Process(agent_fn, name='agent')
    else:
        agent = portal.Thread(agent_fn, name='agent')
    workers = [agent, portal.Process(bind(logger_role.run, make_logger, args), name='logger')]
    if not args.remote_replay:
        workers.append(
            portal.Process(bind(replay_role.run, make_replay, make_stream, args), name='replay')
        )
    if not args.remote_envs:
        workers += env_workers(make_env, args)
    supervise(workers, leader=agent)
    print('Parallel run finished.')


def parallel_env(make_env, env_id, args, is_eval=False):
    """Run one env (started on its own, e.g. one per cluster replica) until the run ends."""
    require_addresses(args, ('actor_addr', 'logger_addr'), 'parallel_env')
    return env_role.run(make_env, env_id, args, is_eval)


def parallel_envs(make_env, args):
    """Run `run.envs` train envs and `run.eval_envs` eval envs as processes of this machine."""
    require_addresses(args, ('actor_addr', 'logger_addr'), 'parallel_envs')
    workers = env_workers(make_env, args)
    supervise(workers, leader=None)


def parallel_replay(make_replay, make_stream, args):
    """Run the replay role on its own until the agent role tells it to stop."""
    require_addresses(args, ('replay_addr', 'logger_addr'), 'parallel_replay')
    worker = portal.Process(
        functools.partial(replay_role.run, make_replay, make_stream, args), name='replay'
    )
    supervise([worker], leader=None)


def combined_args(args):
    """Resolve `actor_batch <= 0` and `{auto}` ports for a run that starts all roles here."""
    actor_batch = args.actor_batch if args.actor_batch > 0 else max(1, args.envs // 2)
    if actor_batch > args.envs:
        raise ValueError(
            f'run.actor_batch={actor_batch} exceeds run.envs={args.envs}: the actor would wait '
            'forever for a full batch. Use at most run.envs, or -1 for envs // 2.'
        )
    updates = {'actor_batch': actor_batch}
    for key in ADDRESSES:
        if '{auto}' in args[key]:
            updates[key] = args[key].format(auto=portal.free_port())
    return args.update(updates)


def require_addresses(args, keys, script):
    """Raise when a role started on its own was given an `{auto}` address."""
    for key in keys:
        if '{auto}' in args[key]:
            raise ValueError(
                f"run.{key} is '{args[key]}', but script {script} runs apart from the other "
                f'roles and cannot guess their free port. Pass the address printed by the '
                f'parallel run, e.g. --run.{key} host:port.'
            )


def env_workers(make_env, args):
    """One process per env: ids 0..envs-1 train, envs..envs+eval_envs-1 evaluate."""
    workers = []
    for env_id in range(args.envs + args.eval_envs):
        is_eval = env_id >= args.envs
        fn = functools.partial(env_role.run, make_env, env_id, args, is_eval)
        workers.append(portal.Process(fn, name=f'env{env_id}'))
    return workers


def supervise(workers, leader=None, grace=SHUTDOWN_GRACE, poll=0.1):
    """Start the workers and wait until all exit; stop everything when one fails.

    A worker that exits with a non-zero code makes this kill all workers (with their child
    processes) and raise RuntimeError naming it. Once `leader` has exited cleanly, the others
    get `grace` seconds to finish before they are killed.
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
            raise RuntimeError(
                f"'{name}' crashed with exit code {code}; see its output above for the error "
                '(a negative code is the signal that killed it).'
            )
        if all(w.exitcode == 0 for w in workers):
            return
        if leader is not None and leader.exitcode == 0:
            finished = finished or time.monotonic()
            if time.monotonic() - finished > grace:
                left = [w.name for w in workers if w.exitcode is None]
                print(f'Killing roles still running {grace}s after the agent finished: {left}')
                kill(workers)
                return


def kill(workers):
    """Kill every worker that is still running with its child processes; wait until all are gone."""
    procs = []
    for worker in workers:
        if isinstance(worker, portal.Process) and worker.started and worker.exitcode is None:
            procs += descendants(worker.pid)
    for worker in workers:
        if worker.started and worker.exitcode is None:
            try:
                worker.kill()
            except Exception as e:  # Best effort: keep killing the others.
                print(f"Could not kill '{worker.name}': {e}")
    reap(procs)


def descendants(pid):
    """The process `pid` and all its descendants, as psutil processes."""
    try:
        proc = psutil.Process(pid)
        return [proc] + proc.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def reap(procs, timeout=REAP_TIMEOUT):
    """Kill the processes that still run and wait until each has exited (or is a zombie)."""
    for proc in procs:
        try:
            # Also covers the children of a worker whose own kill() raised.
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    deadline = time.monotonic() + timeout
    left = [p for p in procs if running(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [p for p in left if running(p)]
    if left:
        print(f'Processes still running {timeout}s after being killed: {[p.pid for p in left]}')


def running(proc):
    """Whether a process exists and is not a zombie."""
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
