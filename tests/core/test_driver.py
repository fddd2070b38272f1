"""Driver semantics (serial and parallel) and failure handling of env worker processes."""

import functools
import multiprocessing
import os
import signal
import subprocess
import sys
import time

import cloudpickle
import elements
import numpy as np
import pytest

import embodied
from embodied.core import wrappers
from embodied.core.driver import WorkerError
from embodied.envs.dummy import Dummy

# numpy-only and version-sensitive: also runs under the reference pin in CI.
pytestmark = pytest.mark.pinned

# Functions and classes of this test module travel to spawned workers by value, so the workers
# need not import the test module.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

LENGTH = 5


def make_env(length=LENGTH, cls=Dummy):
    env = cls('test', size=(4, 4), length=length)
    env = wrappers.AddObs(env, 'log/extra', np.float32(7), elements.Space(np.float32))
    return embodied.wrap_env(env)


class OnesPolicy:
    """Acts with ones, counts its calls in the carry and reports an output per env."""

    def __init__(self):
        self.seen_keys = []

    def init(self, batch_size):
        return {'calls': 0, 'batch': batch_size}

    def __call__(self, carry, obs):
        self.seen_keys.append(sorted(obs))
        batch = len(obs['is_first'])
        acts = {
            'act_disc': np.ones(batch, np.int32),
            'act_cont': np.full((batch, 6), 0.5, np.float32),
        }
        outs = {'out/calls': np.full(batch, carry['calls'], np.int32)}
        return {**carry, 'calls': carry['calls'] + 1}, acts, outs


class Recorder:
    """The step callback of the shared driver; each test points it at fresh lists."""

    def __init__(self):
        self.trans = None
        self.order = None

    def on_step(self, tran, worker):
        if self.trans is not None:
            self.trans[worker].append(tran)
            self.order.append(worker)


RECORDER = Recorder()


@pytest.fixture(scope='module', params=['serial', 'parallel'])
def driver(request):
    driver = embodied.Driver([make_env, make_env], parallel=request.param == 'parallel')
    driver.on_step(RECORDER.on_step)
    yield driver
    driver.close()


def run(driver, **kwargs):
    policy = OnesPolicy()
    driver.reset(policy.init)
    RECORDER.trans = [[], []]
    RECORDER.order = []
    driver(policy, **kwargs)
    return policy, RECORDER.trans


def test_first_last_reset_and_zeroed_actions(driver):
    policy, trans = run(driver, steps=2 * (LENGTH + 3))
    assert len(trans[0]) == len(trans[1]) == LENGTH + 3
    for worker in range(2):
        seq = trans[worker]
        # One reset step, LENGTH steps, then the step after the last one resets by itself.
        assert [bool(t['is_first']) for t in seq] == [True] + [False] * LENGTH + [True, False]
        assert [bool(t['is_last']) for t in seq] == [False] * LENGTH + [True, False, False]
        assert [float(t['reward']) for t in seq] == [0] + [1] * LENGTH + [0, 1]
        assert [int(t['count']) for t in seq] == list(range(LENGTH + 1)) + [0, 1]
        # The action stored with the last step is all zeros; every other one is the policy's.
        assert [int(t['act_disc']) for t in seq] == [1] * LENGTH + [0, 1, 1]
        np.testing.assert_array_equal(seq[LENGTH]['act_cont'], np.zeros(6))
        np.testing.assert_array_equal(seq[0]['act_cont'], np.full(6, 0.5))
        # The transition holds obs, acts, outs and logs, but no reset flag.
        assert 'reset' not in seq[0]
        assert seq[0]['log/extra'] == 7
        assert [int(t['out/calls']) for t in seq] == list(range(LENGTH + 3))
    # The policy never sees log keys; its carry is threaded through every call.
    assert all('log/extra' not in keys for keys in policy.seen_keys)
    assert 'is_first' in policy.seen_keys[0]


def test_pending_reset_follows_is_last(driver):
    run(driver, steps=2 * (LENGTH + 1))
    np.testing.assert_array_equal(driver.acts['reset'], [True, True])
    np.testing.assert_array_equal(driver.acts['act_disc'], [0, 0])
    run(driver, steps=2)
    np.testing.assert_array_equal(driver.acts['reset'], [False, False])
    np.testing.assert_array_equal(driver.acts['act_disc'], [1, 1])


def test_callbacks_in_env_order_then_registration_order():
    driver = embodied.Driver([make_env, make_env], parallel=False)
    driver.reset(OnesPolicy().init)
    calls = []
    driver.on_step(lambda tran, worker: calls.append(('a', worker, bool(tran['is_last']))))
    driver.on_step(lambda tran, worker: calls.append(('b', worker, bool(tran['is_last']))))
    driver(OnesPolicy(), steps=2 * (LENGTH + 1))
    assert calls[:4] == [('a', 0, False), ('b', 0, False), ('a', 1, False), ('b', 1, False)]
    # Every callback has seen the end of env 0's episode before env 1's is handed out.
    assert calls[-4:] == [('a', 0, True), ('b', 0, True), ('a', 1, True), ('b', 1, True)]
    driver.close()


def test_steps_and_episodes_counting(driver):
    # Each driver step advances both envs, so 3 env steps need 2 driver steps.
    _, trans = run(driver, steps=3)
    assert len(trans[0]) == 2
    _, trans = run(driver, steps=4)
    assert len(trans[0]) == 2
    # Both envs end their first episode on driver step LENGTH + 1, which counts 2 episodes.
    _, trans = run(driver, episodes=1)
    assert len(trans[0]) == LENGTH + 1
    _, trans = run(driver, episodes=3)
    assert len(trans[0]) == 2 * (LENGTH + 1)


def test_each_env_delivers_whole_episodes(driver):
    _, trans = run(driver, episodes=2)
    # The two episodes end on the same driver step, env 0's last transition first.
    assert RECORDER.order[-2:] == [0, 1]
    for seq in trans:
        # One episode: from the is_first transition to the is_last one; its score sums every
        # reward and its length counts env steps (transitions - 1).
        assert sum(float(t['reward']) for t in seq) == LENGTH and len(seq) - 1 == LENGTH
        stacked = elements.tree.map(lambda *xs: np.stack(xs), *seq)
        assert stacked['image'].shape == (LENGTH + 1, 4, 4, 3)
        assert stacked['is_first'].tolist() == [True] + [False] * LENGTH
        assert stacked['is_last'].tolist() == [False] * LENGTH + [True]
        assert stacked['act_disc'].tolist() == [1] * LENGTH + [0]


def test_mismatched_observation_keys_raise():
    driver = embodied.Driver([make_env, lambda: embodied.wrap_env(Dummy('x'))], parallel=False)
    with pytest.raises(ValueError, match=r"env 1 .*'log/extra'"):
        driver(OnesPolicy(), steps=2)
    driver.close()


def test_driver_reads_spaces_from_env_zero(driver):
    assert set(driver.act_space) == {'act_disc', 'act_cont', 'reset'}
    assert driver.obs_space['image'].shape == (4, 4, 3)


def test_random_agent_drives_envs():
    env = make_env()
    obs_space = {k: v for k, v in env.obs_space.items() if not k.startswith('log/')}
    act_space = {k: v for k, v in env.act_space.items() if k != 'reset'}
    agent = embodied.RandomAgent(obs_space, act_space)
    driver = embodied.Driver([make_env, make_env], parallel=False)
    driver.reset(agent.init_policy)
    trans = []
    driver.on_step(lambda tran, worker: trans.append(tran))
    driver(lambda carry, obs: agent.policy(carry, obs), steps=20)
    driver.close()
    assert len(trans) == 20
    discs = [int(t['act_disc']) for t in trans if not t['is_last']]
    assert set(discs) <= set(range(5)) and len(set(discs)) > 1
    assert all(np.abs(t['act_cont']).max() <= 1 for t in trans)
    assert agent.init_train(4) == () and agent.init_report(4) == ()
    assert agent.train((), {}) == ((), {}, {}) and agent.report((), {}) == ((), {})
    assert agent.save() is None and agent.load({'x': 1}) is None
    stream = iter([1, 2])
    assert agent.stream(stream) is stream


class CrashingEnv(Dummy):
    """Raises a recognisable error on its third step."""

    def step(self, action):
        self.calls = getattr(self, 'calls', 0) + 1
        if self.calls == 3:
            raise ValueError('boom-4711 from the env')
        return super().step(action)


def test_serial_error_names_env_index():
    driver = embodied.Driver(
        [make_env, functools.partial(make_env, cls=CrashingEnv)], parallel=False
    )
    driver.reset(OnesPolicy().init)
    with pytest.raises(ValueError, match='boom-4711') as info:
        driver(OnesPolicy(), steps=10)
    assert any('env 1' in note for note in info.value.__notes__)
    driver.close()


def test_crashing_worker_raises_with_index_and_traceback():
    driver = embodied.Driver(
        [make_env, functools.partial(make_env, cls=CrashingEnv)], parallel=True
    )
    driver.reset(OnesPolicy().init)
    start = time.time()
    with pytest.raises(WorkerError) as info:
        driver(OnesPolicy(), steps=10)
    assert time.time() - start < 5
    assert info.value.index == 1
    message = str(info.value)
    assert 'Env 1' in message and 'boom-4711 from the env' in message
    assert 'Traceback' in message and 'in step' in message
    # The driver closed every worker.
    for pid in driver.pids:
        with pytest.raises(ProcessLookupError):
            wait_gone(pid)
    driver.close()


def wait_gone(pid, timeout=5):
    """Raise ProcessLookupError once `pid` has exited and been reaped."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        os.kill(pid, 0)
        time.sleep(0.05)


def test_workers_ignore_interrupts_until_closed():
    driver = embodied.Driver([make_env, make_env], parallel=True)
    driver.reset(OnesPolicy().init)
    driver(OnesPolicy(), steps=2)
    # A Ctrl-C in a terminal reaches every worker; the owner of the driver decides to stop.
    for pid in driver.pids:
        os.kill(pid, signal.SIGINT)
        os.kill(pid, signal.SIGTERM)
    time.sleep(0.5)
    driver(OnesPolicy(), steps=4)
    driver.close()
    for pid in driver.pids:
        with pytest.raises(ProcessLookupError):
            wait_gone(pid)


def test_killed_worker_raises_instead_of_hanging():
    driver = embodied.Driver([make_env], parallel=True)
    driver.reset(OnesPolicy().init)
    driver(OnesPolicy(), steps=1)
    os.kill(driver.pids[0], signal.SIGKILL)
    start = time.time()
    with pytest.raises(WorkerError, match=r'env 0 .* died with exit code -9') as info:
        driver(OnesPolicy(), steps=5)
    assert time.time() - start < 5
    assert info.value.index == 0
    driver.close()


class SpawningEnv(Dummy):
    """Starts a multiprocessing child and a subprocess in its constructor, as simulators do."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.child = multiprocessing.get_context('spawn').Process(target=time.sleep, args=(120,))
        self.child.start()
        self.popen = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])

    @property
    def obs_space(self):
        return {**super().obs_space, 'log/children': elements.Space(np.int64, (2,))}

    def step(self, action):
        obs = super().step(action)
        obs['log/children'] = np.array([self.child.pid, self.popen.pid], np.int64)
        return obs


def test_env_may_start_processes_and_close_ends_them():
    driver = embodied.Driver([functools.partial(make_env, cls=SpawningEnv)] * 2, parallel=True)
    driver.reset(OnesPolicy().init)
    trans = []
    driver.on_step(lambda tran, worker: trans.append(tran))
    driver(OnesPolicy(), steps=2 * (LENGTH + 2))
    assert len(trans) == 2 * (LENGTH + 2)
    children = {int(pid) for tran in trans for pid in tran['log/children']}
    assert len(children) == 4
    for pid in children:
        os.kill(pid, 0)  # running while the env works
    driver.close()
    # Closing the driver ends each worker together with the processes its env started.
    for pid in children:
        with pytest.raises(ProcessLookupError):
            wait_gone(pid)


class NanEnv(Dummy):
    """Returns a NaN in its float vector on the third step."""

    def step(self, action):
        obs = super().step(action)
        self.calls = getattr(self, 'calls', 0) + 1
        if self.calls == 3:
            obs['vector'] = np.full(7, np.nan, np.float32)
        return obs


@pytest.mark.parametrize('parallel', [False, True])
def test_nan_observation_names_the_env(parallel):
    fns = [make_env, make_env, functools.partial(make_env, cls=NanEnv)]
    driver = embodied.Driver(fns, parallel=parallel)
    driver.reset(OnesPolicy().init)
    with pytest.raises(ValueError, match=r"Observation 'vector' of env 2 contains NaN"):
        driver(OnesPolicy(), steps=30)
    driver.close()
