"""Pieces of the parallel script tested in-process: actor, replay role, logger role, supervisor."""

import concurrent.futures
import threading
import time

import elements
import helpers
import numpy as np
import portal
import pytest

from embodied.envs import registry
from embodied.envs.dummy import Dummy
from embodied.run import (
    agent_role,
    checkpoints,
    env_role,
    logger_role,
    parallel,
    remote,
    replay_role,
)


def raise_error():
    raise ValueError('env exploded')


def sleep_forever():
    while True:
        time.sleep(0.1)


def test_addresses_resolve_to_free_ports_and_the_actor_batch(tmp_path):
    resolved = parallel.resolve_addresses(helpers.config('--run.envs', '5', logdir=tmp_path))
    assert resolved.run.actor_batch == 2
    for key in parallel.ADDRESSES:
        host, port = resolved.run[key].split(':')
        assert host == 'localhost' and int(port) > 0
    config = helpers.config('--run.envs', '2', '--run.actor_batch', '3', logdir=tmp_path)
    with pytest.raises(ValueError, match='actor_batch=3 exceeds run.envs=2'):
        parallel.resolve_addresses(config)


def test_separate_roles_need_real_addresses(tmp_path):
    config = helpers.config(logdir=tmp_path)
    with pytest.raises(ValueError, match=r'run.actor_addr .* --run.actor_addr host:port'):
        parallel.parallel_env(config)
    with pytest.raises(ValueError, match='run.replay_addr'):
        parallel.parallel_replay(config)


def test_missing_checkpoint_fails_before_any_role_starts(tmp_path):
    config = helpers.config('--run.from_checkpoint', str(tmp_path / 'none'), logdir=tmp_path)
    with pytest.raises(checkpoints.CheckpointError, match='No complete checkpoint'):
        parallel.parallel(config, make_agent=None)


def test_supervisor_stops_everything_when_one_role_crashes():
    sleeper = portal.Process(sleep_forever, name='sleeper')
    crasher = portal.Process(raise_error, name='env1')
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="'env1' crashed with exit code 1"):
        parallel.supervise([sleeper, crasher])
    assert time.monotonic() - start < 30
    assert not sleeper.running


def test_supervisor_kills_stragglers_after_the_leader_finished():
    leader = portal.Thread(lambda: 0, name='agent')
    straggler = portal.Process(sleep_forever, name='env0')
    parallel.supervise([leader, straggler], leader=leader, grace=0.5)
    assert not straggler.running


class SlowSaveable:
    """A checkpoint entry whose save takes a while and counts overlapping saves."""

    def __init__(self):
        self.inside = 0
        self.most = 0
        self.lock = threading.Lock()

    def save(self):
        with self.lock:
            self.inside += 1
            self.most = max(self.most, self.inside)
        time.sleep(0.2)
        with self.lock:
            self.inside -= 1
        return {'value': 1}

    def load(self, data):
        pass


def test_role_saves_from_two_threads_run_one_at_a_time(tmp_path):
    # A role saves on its clock while the agent role's stop() saves from a server thread.
    checkpoint = elements.Checkpoint(tmp_path / 'ckpt')
    checkpoint.entry = SlowSaveable()
    saver = checkpoints.SerialSaver(checkpoint)
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        saves = [pool.submit(saver.save) for _ in range(3)]
    for save in saves:
        save.result()  # re-raises an error of that thread
    assert checkpoint.entry.most == 1
    latest = (tmp_path / 'ckpt' / 'latest').read_text().strip()
    assert (tmp_path / 'ckpt' / latest / 'done').exists()


def make_logger():
    records = []
    logger = elements.Logger(elements.Counter(), [records.extend])
    return logger, records


def tran(first=False, last=False, reward=0.0):
    return {
        'is_first': np.bool_(first),
        'is_last': np.bool_(last),
        'reward': np.float32(reward),
        'image': np.zeros((4, 4, 3), np.uint8),
    }


def test_logger_episodes_lengths_prefixes_and_abandoned():
    logger, records = make_logger()
    episodes = logger_role.Episodes(logger, timeout=60)
    # Env 3 (train): 1 reset step + 2 env steps. Env 7 (eval): the same.
    for env_id, is_eval in ((3, False), (7, True)):
        episodes.add(tran(first=True), env_id, is_eval)
        episodes.add(tran(reward=1.0), env_id, is_eval)
        episodes.add(tran(last=True, reward=2.0), env_id, is_eval)
    # Env 3 starts an episode, then starts again without ending it.
    episodes.add(tran(first=True), 3, False)
    episodes.add(tran(first=True), 3, False)
    logger.write()
    values = {(name, value.item()) for _, name, value in records}
    assert ('episode/length', 2) in values and ('episode/score', 3.0) in values
    assert ('eval_episode/length', 2) in values and ('eval_episode/score', 3.0) in values
    metrics = episodes.metrics()
    assert metrics['parallel/ep_starts'] == 4
    assert metrics['parallel/ep_ends'] == 2
    assert metrics['parallel/ep_abandoned'] == 1
    assert metrics['epstats/policy_image'].shape == (3, 4, 4, 3)
    assert metrics['eval_epstats/policy_image'].shape == (3, 4, 4, 3)


def test_logger_drops_episodes_of_silent_envs():
    logger, _ = make_logger()
    episodes = logger_role.Episodes(logger, timeout=0.0)
    episodes.add(tran(first=True), 0, False)
    time.sleep(0.01)
    episodes.drop_silent()
    assert not episodes.open and not episodes.stats[False].episodes
    # The rest of the dropped episode is ignored instead of logging a broken episode.
    episodes.add(tran(last=True), 0, False)
    assert episodes.metrics()['parallel/ep_ends'] == 0


@pytest.fixture
def server(tmp_path, fake_agent):
    config = helpers.config('--run.envs', '2', '--run.eval_envs', '1', logdir=tmp_path)
    agent = fake_agent(config)
    return agent_role.PolicyServer(agent, config, threading.Event(), threading.Event())


def observations(agent, envids, is_last, is_eval=False):
    batch = len(envids)
    spaces = agent.random.obs_space
    obs = {k: np.stack([v.sample() for _ in range(batch)]) for k, v in spaces.items()}
    obs['is_last'] = np.asarray(is_last, bool)
    obs['log/extra'] = np.ones(batch, np.float32)
    obs['envid'] = np.asarray(envids, np.int32)
    obs['is_eval'] = np.full(batch, is_eval)
    return obs


def test_policy_server_zeroes_last_actions_and_keeps_carries_per_env(server):
    agent = server.agent
    reply, tran = server.act(observations(agent, [0, 1], [False, True]), mode='train')
    assert reply['reset'].tolist() == [False, True]
    assert reply['stop'].tolist() == [False, False]
    for key in agent.random.act_space:
        assert (reply[key][1] == 0).all()
        np.testing.assert_array_equal(tran[key], reply[key])
    assert tran['envid'].tolist() == [0, 1] and 'log/extra' in tran
    # Carries are kept per env id, whatever the batch they arrive in.
    server.act(observations(agent, [1, 0], [False, False]), mode='train')
    assert server.carries == {0: 2, 1: 2}
    reply, _ = server.act(observations(agent, [2], [False], is_eval=True), mode='eval')
    assert agent.modes == {'train': 4, 'eval': 1}
    assert server.carries[2] == 1


def test_policy_server_tells_envs_to_stop_at_the_step_limit(server):
    agent = server.agent
    done = portal.Future()
    done.set_result(int(server.config.run.steps))
    server._on_step(done)
    assert server.stop.is_set()
    reply, _ = server.act(observations(agent, [0, 1], [False, False]), mode='train')
    assert reply['stop'].tolist() == [True, True]
    assert server.stopping(2)
    server.finish(timeout=5)
    assert server.closing.is_set() and server.told == {0, 1, 2}


@pytest.fixture
def role(tmp_path):
    flags = ('--batch_size', '2', '--run.train_ratio', '20')
    return replay_role.ReplayRole(helpers.config(*flags, logdir=tmp_path))


def transitions(envid, count, start, is_eval=False):
    steps = np.arange(start, start + count)
    return {
        'is_first': steps == 0,
        'is_last': np.zeros(count, bool),
        'is_terminal': np.zeros(count, bool),
        'reward': steps.astype(np.float32),
        'envid': np.full(count, envid, np.int32),
        'is_eval': np.full(count, is_eval),
    }


def test_replay_role_routes_eval_and_paces_with_the_limiter(role):
    # L = 11 steps per item, minsize = batch_size * L = 22 inserts.
    assert role.limiter.minsize == 22
    role.add_batch(transitions(5, 30, 0, is_eval=True))
    # Items of L consecutive steps: eval L = 5 + 1, train L = 10 + 1.
    assert len(role.replay_eval) == 30 - 5 and len(role.replay_train) == 0
    role.add_batch(transitions(0, 40, 0))
    assert len(role.replay_train) == 40 - 10
    # Sampling waits until avail > -tolerance: avail = -22 + (40 - 21) * 2 = 16 > -8.
    batch = role.sample_batch_train()
    assert batch['reward'].shape == (2, 11)
    assert role.limiter.avail == 16 - 2
    metrics = role.metrics()
    assert metrics['replay/inserts'] == 40 and metrics['replay_eval/inserts'] == 30


def test_replay_role_stop_releases_waiting_calls(role):
    results = []
    thread = threading.Thread(target=lambda: results.append(role.sample_batch_train()))
    thread.start()
    time.sleep(0.2)
    assert thread.is_alive()  # No inserts yet, so the sample waits for the limiter.
    role.stopping.set()
    thread.join(timeout=5)
    assert results == [{}]


def test_metrics_sent_between_roles_keep_their_rank():
    sent = remote.contiguous_metrics(
        {'loss': np.float64(1.5), 'text': 'summary', 'video': np.zeros((2, 4, 4, 3))[:, :, ::2]}
    )
    assert sent['loss'].shape == () and sent['text'] == 'summary'
    assert sent['video'].shape == (2, 4, 2, 3) and sent['video'].flags['C_CONTIGUOUS']


class NanEnv(Dummy):
    """Every observation has NaN in its float vector."""

    def _obs(self, *args, **kwargs):
        return {**super()._obs(*args, **kwargs), 'vector': np.full(7, np.nan, np.float32)}


def test_env_role_names_the_env_of_a_nan_observation(tmp_path, monkeypatch):
    port = portal.free_port()
    config = helpers.config('--run.actor_addr', f'localhost:{port}', logdir=tmp_path)
    monkeypatch.setattr(registry, 'make_env', lambda config, index: NanEnv('nan', size=(4, 4)))
    actor = portal.Server(port, 'FakeActor')  # the env connects before its first step
    actor.start(block=False)
    try:
        with pytest.raises(ValueError, match=r"Observation 'vector' of env 3 contains NaN"):
            env_role.run(config, 3, is_eval=False)
    finally:
        actor.close()
