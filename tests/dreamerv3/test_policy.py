"""`dreamerv3.load_policy` and `scripts/play.py` on the logdir of one short debug run.

The dummy task is deterministic: every episode is a reset step and 100 steps of reward 1,
whatever the actions. So a policy loop and `eval_only` score the same episodes exactly, and
the actions themselves are compared with the run machinery's acting loop in-process.
"""

import re
import subprocess
import sys

import av
import helpers
import numpy as np
import pytest

import dreamerv3
from dreamerv3 import main
from embodied.core import driver as driverlib
from embodied.run import checkpoints, eval_only, train

ROOT = helpers.ROOT
LENGTH = 100  # steps of a dummy episode after its reset step


@pytest.fixture(scope='module')
def logdir(tmp_path_factory, shared_agent):
    """A debug run on the dummy task that saved a checkpoint."""
    logdir = tmp_path_factory.mktemp('policy') / 'train'
    config = helpers.config('--run.steps', '20', logdir=logdir)
    main.write_config(config)
    with helpers.kept_jax_settings():
        train.train(config, helpers.reuse(*shared_agent))
    return logdir


@pytest.fixture
def shared(make_debug_agent, monkeypatch):
    """`load_policy` and the scripts build the shared debug agent instead of compiling one."""
    monkeypatch.setattr(main, 'make_agent', make_debug_agent)
    return make_debug_agent


@pytest.fixture
def policy(logdir, shared):
    """The run's policy for one env, on the device JAX picks (the CPU here)."""
    return dreamerv3.load_policy(logdir)


def play(policy, env, episodes):
    """Scores, lengths and the actions of `episodes` episodes of a single-env policy loop."""
    scores, lengths, actions = [], [], []
    obs = env.step(policy.reset_action())
    for _ in range(episodes):
        score, length = 0.0, 0
        while not obs['is_last']:
            act = policy(obs)
            actions.append(act)
            obs = env.step(act)
            score += float(obs['reward'])
            length += 1
        scores.append(score)
        lengths.append(length)
        obs = env.step(policy.reset_action())
    return scores, lengths, actions


def test_policy_scores_like_eval_only(logdir, policy, tmp_path):
    assert policy.mode == 'eval' and policy.batch is None
    env = policy.make_env()
    scores, lengths, actions = play(policy, env, 2)
    env.close()
    for act in actions:
        assert set(act) == {'act_disc', 'act_cont', 'reset'}
        assert act['act_disc'].shape == () and 0 <= act['act_disc'] < 5
        assert act['act_cont'].shape == (6,) and np.isfinite(act['act_cont']).all()
        assert not act['reset']

    evaldir = tmp_path / 'eval'
    steps = 2 * (LENGTH + 1)  # two whole episodes of one env
    flags = ('--script', 'eval_only', '--run.from_checkpoint', str(logdir), '--run.envs', '1')
    config = helpers.config(*flags, '--run.steps', str(steps), logdir=evaldir)
    eval_only.eval_only(config, main.make_agent)
    records = helpers.metrics(evaldir)
    assert [r['episode/score'] for r in records if 'episode/score' in r] == scores
    assert [r['episode/length'] for r in records if 'episode/length' in r] == lengths
    assert scores == [LENGTH, LENGTH]


def test_batched_policy_acts_like_the_run_loop(logdir, shared):
    policy = dreamerv3.load_policy(logdir, batch=2, platform='cpu')
    # The acting loop of eval_only: a driver steps the envs with agent.policy(mode='eval').
    agent = main.make_agent(policy.config)
    checkpoints.load_agent(agent, logdir)
    steps = LENGTH + 10  # crosses an episode end, after which the carries restart
    driver = driverlib.Driver([lambda i=i: policy.make_env(i) for i in range(2)], parallel=False)
    expected = []
    driver.on_step(lambda tran, worker: expected.append((worker, tran)))
    driver.reset(agent.init_policy)
    driver(lambda *a: agent.policy(*a, mode='eval'), steps=2 * steps)
    driver.close()
    # The policy acts with the same agent: from the checkpoint's action counter again.
    checkpoints.load_agent(policy.agent, logdir)

    envs = [policy.make_env(i) for i in range(2)]
    start = policy.reset_action()
    obs = [env.step({k: v[i] for k, v in start.items()}) for i, env in enumerate(envs)]
    got = []
    for _ in range(steps):
        act = policy({k: np.stack([o[k] for o in obs]) for k in obs[0]})
        assert act['act_disc'].shape == (2,) and act['act_cont'].shape == (2, 6)
        got += [(i, {k: v[i] for k, v in act.items()}) for i in range(2)]
        obs = [env.step({k: v[i] for k, v in act.items()}) for i, env in enumerate(envs)]
    for env in envs:
        env.close()

    # The driver records each transition with the action taken on it, step by step and env
    # by env. On last steps it zeroes the action, which then only resets the env.
    pairs = [(g, e) for g, e in zip(got, expected) if not e[1]['is_last']]
    assert len(pairs) >= 2 * LENGTH
    for (worker, act), (expected_worker, tran) in pairs:
        assert worker == expected_worker
        np.testing.assert_array_equal(act['act_disc'], tran['act_disc'])
        np.testing.assert_allclose(act['act_cont'], tran['act_cont'], rtol=1e-6)


def test_reset_and_is_first_restart_the_carry(policy):
    env = policy.make_env()
    initial = policy._initial
    obs = env.step(policy(env.step(policy.reset_action())))
    assert policy._carry[0] is not initial
    policy.reset()
    assert policy._carry[0] is initial
    policy(obs)
    assert policy._carry[0] is not initial
    # An is_first observation restarts the carry before the agent acts on it.
    seen, act = [], policy.agent.policy

    def recording(carry, obs, mode):
        seen.append(carry[0])
        return act(carry, obs, mode=mode)

    policy.agent.policy = recording
    try:
        policy(env.step(policy.reset_action()))
    finally:
        del policy.agent.policy
    assert seen == [initial]
    env.close()


def test_bad_inputs_are_clear_errors(logdir, policy, tmp_path):
    with pytest.raises(checkpoints.CheckpointError, match='No complete checkpoint'):
        dreamerv3.load_policy(tmp_path)
    with pytest.raises(ValueError, match='mode must be one of'):
        dreamerv3.load_policy(logdir, mode='greedy')
    with pytest.raises(ValueError, match='batch must be'):
        dreamerv3.load_policy(logdir, batch=0)
    env = policy.make_env()
    obs = env.step(policy.reset_action())
    env.close()
    with pytest.raises(KeyError, match=r"lacks the keys \['image'\]"):
        policy({k: v for k, v in obs.items() if k != 'image'})
    with pytest.raises(ValueError, match=r"'vector' has shape \(8,\); this policy expects \(7,\)"):
        policy({**obs, 'vector': np.zeros(8, np.float32)})
    # Extra keys (log/ metrics of the env) and other dtypes are accepted.
    act = policy({**obs, 'log/extra': 1.0, 'vector': obs['vector'].astype(np.float64)})
    assert act['act_disc'].shape == ()


def test_the_readme_example_runs_as_written_and_loads_quietly(logdir, shared, capsys):
    readme = (ROOT / 'README.md').read_text()
    section = readme.split('## Use a trained policy\n', 1)[1].split('\n## ', 1)[0]
    (code,) = re.findall(r'```python\n(.*?)```', section, re.S)
    # Only the path changes: this run's logdir instead of the example's.
    assert "'~/logdir/pong'" in code
    scope = {}
    capsys.readouterr()
    exec(code.replace("'~/logdir/pong'", repr(str(logdir))), scope)
    assert scope['obs']['is_last']
    assert capsys.readouterr().out == ''
    dreamerv3.load_policy(logdir, verbose=True)
    assert 'Loading agent parameters from' in capsys.readouterr().out


def test_play_script_prints_scores_and_writes_a_video(logdir, tmp_path, shared, capsys):
    video = tmp_path / 'out.mp4'
    argv = ['--logdir', str(logdir), '--episodes', '2', '--video', str(video)]
    load_play().main([*argv, '--platform', 'cpu'])
    out = capsys.readouterr().out
    assert 'Episode 1/2: score 100.00, length 100' in out
    assert 'Episode 2/2: score 100.00, length 100' in out
    assert 'Played 2 episodes of dummy_disc: mean score 100.00' in out
    with av.open(str(video)) as container:
        frames = [f.to_ndarray(format='rgb24') for f in container.decode(video=0)]
    assert len(frames) == 2 * (LENGTH + 1)
    assert frames[0].shape == (64, 64, 3)


def test_play_script_errors_are_one_line(tmp_path):
    command = [sys.executable, str(ROOT / 'scripts' / 'play.py'), '--logdir', str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, helpers.output(result)
    assert 'No complete checkpoint' in result.stderr and 'Traceback' not in result.stderr


def load_play():
    """scripts/play.py as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location('play', ROOT / 'scripts' / 'play.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_play_names_tasks_and_checks_spaces():
    import types

    import elements

    play = load_play()
    assert play.task_name('CartPole-v1') == 'gym_CartPole-v1'
    assert play.task_name('mypkg.envs:MyEnv-v0') == 'gym_mypkg.envs:MyEnv-v0'
    assert play.task_name('dummy_disc') == 'dummy_disc'
    assert play.task_name('custom_mypkg:Env') == 'custom_mypkg:Env'
    image = elements.Space(np.uint8, (64, 64, 3))
    vector = elements.Space(np.float32, (4,))
    action = elements.Space(np.int32, (), 0, 2)
    policy = types.SimpleNamespace(obs_space={'image': image}, act_space={'action': action})
    env = types.SimpleNamespace(
        obs_space={'image': image, 'log/x': vector},
        act_space={'action': action, 'reset': elements.Space(bool)},
    )
    play.check_spaces(policy, env)  # log/ keys and reset are not the policy's
    assert play.video_key(env, '') == 'image'
    env.obs_space = {'vector': vector}
    assert play.video_key(env, '') is None  # rendered frames then
    with pytest.raises(ValueError, match='observations image: policy Space'):
        play.check_spaces(policy, env)
    with pytest.raises(ValueError, match='is not an image observation'):
        play.video_key(env, 'vector')
