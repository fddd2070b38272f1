"""Env role of the parallel script: step one env with actions from the actor server."""

import os

import elements
import numpy as np
import portal

from ..core import clock, driver
from ..envs import registry
from . import remote


def run(config: elements.Config, env_id: int, is_eval: bool, ending=None) -> int:
    """Step env `env_id` until the actor says the run has ended; returns 0.

    The env sends each observation (plus `envid` and `is_eval`) to the actor's `act` method
    (`act_eval` for eval envs) and executes the returned action. After a last step, and at the
    start, the action is a random reset action. On a lost connection it reconnects and resets.
    While it waits to connect, `ending` (a multiprocessing event, when given) being set also
    ends it: the run stopped before the actor could tell this env.
    """
    env = registry.make_env(config, env_id)
    print(f'Env {env_id} ({"eval" if is_eval else "train"}) started in process {os.getpid()}.')
    act_space = {k: v for k, v in env.act_space.items() if k != 'reset'}
    method = 'act_eval' if is_eval else 'act'
    actor = portal.Client(config.run.actor_addr, f'Env{env_id}Actor', autoconn=False)
    reporter = None
    done = True
    act = None
    try:
        if not connect(actor, ending):
            print(f'Env {env_id} stops because the run has ended.')
            return 0
        reporter = Reporter(env_id, config) if env_id == 0 else None
        while True:
            if done:
                act = {k: v.sample() for k, v in act_space.items()}
                act['reset'] = True
            with elements.timer.section('env_step'):
                obs = env.step(act)
            obs = {k: np.asarray(v) for k, v in obs.items()}
            driver.check_nan(obs, env_id)
            if reporter:
                reporter.step(obs)
            obs['envid'] = np.int32(env_id)
            obs['is_eval'] = np.bool_(is_eval)
            try:
                with elements.timer.section('env_wait'):
                    reply = request(actor, method, obs, env_id)
            except portal.Disconnected:
                print(f'Env {env_id} lost the actor; reconnecting and resetting.')
                if not connect(actor, ending):
                    print(f'Env {env_id} stops because the run has ended.')
                    return 0
                done = True
                continue
            if reply is None or bool(reply.pop('stop')):
                print(f'Env {env_id} stops because the run has ended.')
                return 0
            act = reply
            done = bool(obs['is_last'])
    finally:
        if reporter:
            reporter.close()
        actor.close()
        env.close()


def connect(actor: portal.Client, ending, poll: float = remote.POLL) -> bool:
    """Wait until `actor` is connected (True) or `ending` is set (False)."""
    while not actor.connect(timeout=poll):
        if ending is not None and ending.is_set():
            return False
    return True


def request(
    actor: portal.Client, method: str, obs: dict, env_id: int, poll: float = remote.POLL
) -> dict | None:
    """The actor's reply to `obs`, or None once the actor reports that the run has ended."""
    future = actor.call(method, obs)
    while True:
        try:
            return future.result(timeout=poll)
        except TimeoutError:
            pass
        # The reply may wait for a batch that never fills once other envs have stopped.
        try:
            if actor.call('stopping', np.int32(env_id)).result(timeout=poll):
                return None
        except TimeoutError:
            pass


class Reporter:
    """Env 0 prints its episodes and sends env throughput, timer and usage to the logger."""

    def __init__(self, env_id, config):
        self.env_id = env_id
        self.logger = portal.Client(config.run.logger_addr, f'Env{env_id}Logger', maxinflight=8)
        self.should_log = clock.LocalClock(config.run.log_every)
        self.usage = elements.Usage(**config.run.usage)
        self.fps = elements.FPS()
        self.score = 0.0
        self.length = 0

    def step(self, obs: dict) -> None:
        """Count one env step and print the episode when it ends."""
        self.fps.step()
        if obs['is_first']:
            self.score, self.length = 0.0, 0
        else:
            self.length += 1
        self.score += float(obs['reward'])
        if obs['is_last']:
            print(f'Env {self.env_id} episode: length {self.length}, score {self.score:.1f}')
        if self.should_log():
            metrics = {'fps/env': self.fps.result()}
            metrics.update(remote.prefixed(self.usage.stats(), 'usage/env'))
            metrics.update(remote.prefixed(self.logger.stats(), 'client/env_logger'))
            metrics['timer/env'] = remote.timer_summary()
            self.logger.add(metrics)

    def close(self) -> None:
        """Close the logger connection."""
        self.logger.close()
