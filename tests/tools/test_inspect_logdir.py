"""python -m dreamerv3.tools.inspect_logdir on the logdir of a real short debug run."""

import json
import os
import pickle
import shutil
import socket

import helpers
import numpy as np
import pytest

from dreamerv3 import main
from dreamerv3.tools import inspect_logdir, plot, score
from embodied.core import chunks as chunklib
from embodied.core.replay import Replay
from embodied.run import checkpoints as ckptlib
from embodied.run import lock, train


@pytest.fixture(scope='module')
def logdir(tmp_path_factory, shared_agent):
    """A debug run of 200 steps in one env, so that two 100-step episodes finish."""
    logdir = tmp_path_factory.mktemp('inspect') / 'debug' / 'run0'
    config = helpers.config('--run.steps', '200', '--run.envs', '1', logdir=logdir)
    main.write_config(config)
    with helpers.kept_jax_settings():
        train.train(config, helpers.reuse(*shared_agent))
    return logdir


def command(module, *args):
    """A tool's command run in this process."""
    return helpers.call(module.main, *args)


def inspect_json(logdir):
    result = command(inspect_logdir, logdir, '--json')
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def latest_checkpoint(logdir):
    return logdir / 'ckpt' / (logdir / 'ckpt' / 'latest').read_text().strip()


def test_prints_config_checkpoints_progress_replay_scores_losses_lock(logdir):
    result = command(inspect_logdir, logdir)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    lines = text.splitlines()
    # Keys the debug preset and the flags changed, each with its default.
    assert any(line.split()[:2] == ['run.envs', '1'] and '(default 16)' in line for line in lines)
    assert any(line.split()[:2] == ['batch_size', '8'] for line in lines)
    assert any(line.split()[:2] == ['run.steps', '200'] for line in lines)
    assert not any(line.split()[:1] == ['jax.compute_dtype'] for line in lines)
    folder = latest_checkpoint(logdir)
    step = pickle.loads((folder / 'step.pkl').read_bytes())
    updates = pickle.loads((folder / 'agent.pkl').read_bytes())['counters']['updates']
    line = [line for line in lines if folder.name in line][0]
    assert f'step {step}' in line and 'latest' in line and f'{updates} updates' in line
    assert f'Env steps: {step} of run.steps 200' in text
    assert f'Updates: {updates} in the latest checkpoint' in text
    stored = sum(len(np.load(p)['stepid']) for p in (logdir / 'replay').glob('*.npz'))
    chunks = len(list((logdir / 'replay').glob('*.npz')))
    assert f'Replay (replay/): {stored} steps in {chunks} chunks' in text
    episodes = len((logdir / 'scores.jsonl').read_text().splitlines())
    assert episodes >= 1 and f'Scores (episode/score): {episodes} episode' in text
    last = json.loads((logdir / 'metrics.jsonl').read_text().splitlines()[-1])
    losses = [k.removeprefix('train/loss/') for k in last if k.startswith('train/loss/')]
    assert 'Losses (at' in text and all(f'{name} ' in text for name in losses)
    assert 'Lock: free' in text


def test_json_facts_agree_with_the_files(logdir):
    facts = inspect_json(logdir)
    assert facts['task'] == 'dummy_disc' and facts['script'] == 'train'
    changed = {c['key']: c for c in facts['changes']}
    assert changed['run.envs']['value'] == 1 and changed['run.envs']['default'] == 16
    assert 'logdir' not in changed
    (replay,) = facts['replay']
    files = list((logdir / 'replay').glob('*.npz'))
    assert replay['bytes'] == sum(p.stat().st_size for p in files)
    (ckpt,) = [c for c in facts['checkpoints'] if c['latest']]
    assert ckpt['complete'] and ckpt['path'] == str(latest_checkpoint(logdir).relative_to(logdir))
    scores = [json.loads(line) for line in (logdir / 'scores.jsonl').read_text().splitlines()]
    last = facts['scores']['episode/score']['last'][-1]
    assert last == [scores[-1]['step'], scores[-1]['episode/score']]
    assert facts['progress']['logged_frames'] >= facts['progress']['checkpoint_steps']


def test_a_live_holder_of_the_lock_is_named(logdir, tmp_path):
    copy = tmp_path / 'held'
    shutil.copytree(logdir, copy)
    with lock.acquire(str(copy)):
        held = command(inspect_logdir, copy)
        facts = inspect_json(copy)
    assert held.returncode == 0, held.stderr
    assert f'Lock: held by a running process, pid {os.getpid()}' in held.stdout
    assert facts['lock']['held'] and facts['lock']['holder']['pid'] == os.getpid()
    assert 'Lock: free' in command(inspect_logdir, copy).stdout


def test_a_stale_lock_counts_as_free(logdir, tmp_path):
    copy = tmp_path / 'stale'
    shutil.copytree(logdir, copy)
    # This host and this pid, but a start time that is not this process's: a reused pid.
    info = {'host': socket.gethostname(), 'pid': os.getpid(), 'start': 0.0, 'started': 'x'}
    (copy / 'lock').write_text(json.dumps(info))
    assert 'Lock: free' in command(inspect_logdir, copy).stdout


def test_keys_the_run_lacks_or_the_defaults_dropped(logdir, tmp_path):
    copy = tmp_path / 'old'
    shutil.copytree(logdir, copy)
    text = (copy / 'config.yaml').read_text()
    assert '\nseed: 0\n' in text
    text = text.replace('\nseed: 0\n', '\nold_key: 3\n')
    (copy / 'config.yaml').write_text(text)
    changed = {c['key']: c for c in inspect_json(copy)['changes']}
    assert changed['seed']['value'] is None and 'after this run' in changed['seed']['note']
    assert changed['old_key']['value'] == 3 and 'not in the current' in changed['old_key']['note']


def test_plot_and_score_read_the_real_run(logdir, tmp_path):
    scored = command(score, logdir.parent, '--json', tmp_path / 's.json')
    assert scored.returncode == 0, scored.stderr
    summary = json.loads((tmp_path / 's.json').read_text())
    # The dummy task pays 1 per step, so every 100-step episode scores 100 (the first, reset
    # step pays 0 and is not counted in the length).
    task = summary['dummy']['tasks']['dummy_disc']['debug']
    assert task['score'] == pytest.approx(100, abs=1)
    plotted = command(plot, logdir.parent, '--out', tmp_path / 'p.png')
    assert plotted.returncode == 0, plotted.stderr
    assert (tmp_path / 'p.png').stat().st_size > 0 and (tmp_path / 'p.csv').exists()


def test_bad_logdirs_exit_2(tmp_path):
    for path in (tmp_path / 'missing', tmp_path):
        result = command(inspect_logdir, path)
        assert result.returncode == 2, result
        assert 'error:' in result.stderr and 'Traceback' not in result.stderr


def test_the_commands_run_from_the_command_line(logdir):
    result = helpers.tool('dreamerv3.tools.inspect_logdir', logdir)
    assert result.returncode == 0 and 'Lock: free' in result.stdout, result.stderr
    # The old paths of plot and score still work.
    for name in ('dreamerv3.plot', 'dreamerv3.score'):
        helped = helpers.tool(name, '--help')
        assert helped.returncode == 0 and 'usage' in helped.stdout, helped.stderr


NONE = {'chunks': 0, 'steps': 0}


def test_the_real_run_lists_every_chunk_on_disk(logdir):
    (replay,) = inspect_json(logdir)['replay']
    assert replay['listed']['chunks'] == replay['chunks']
    assert replay['listed']['steps'] == replay['steps']
    assert replay['unlisted'] == {'older': NONE, 'newer': NONE} and replay['missing'] == NONE
    assert ', all listed by the checkpoint ckpt/' in command(inspect_logdir, logdir).stdout


def test_a_chunk_the_checkpoint_does_not_list_is_flagged(logdir, tmp_path):
    copy = tmp_path / 'dropped'
    shutil.copytree(logdir, copy)
    # A chunk started before the checkpoint but left out of its list.
    chunk = chunklib.Chunk(8, time='20000101T000000F000000')
    for index in range(3):
        chunk.append({'x': np.int64(index)})
    chunk.save(copy / 'replay')
    (replay,) = inspect_json(copy)['replay']
    assert replay['unlisted']['older'] == {'chunks': 1, 'steps': 3}
    assert replay['steps'] == replay['listed']['steps'] + 3
    text = command(inspect_logdir, copy).stdout
    listed = replay['listed']['steps']
    assert f'lists {listed} steps in {replay["listed"]["chunks"]} chunks' in text
    assert 'Not listed: 1 chunk files (3 steps) older than the checkpoint, although' in text


def replay_logdir(path):
    """A logdir whose checkpoint lists 2 x 12 steps of a replay folder."""
    replay = Replay(5, capacity=1000, directory=path / 'replay', chunksize=16)
    for index in range(12):
        for worker in range(2):
            replay.add({'x': np.int64(index), 'is_first': index == 0}, worker)
    checkpoint = ckptlib.Checkpoint(path / 'ckpt')
    checkpoint.replay = replay
    checkpoint.save()
    return replay


def test_chunks_written_after_the_checkpoint_and_missing_ones(tmp_path):
    replay = replay_logdir(tmp_path)
    for worker in range(2):
        replay.add({'x': np.int64(12), 'is_first': False}, worker)
    replay.save()  # chunk files of a run that stopped before its next checkpoint
    (facts,) = inspect_logdir.replay(tmp_path, {'replay.size': 10})
    assert facts['listed']['steps'] == 24 and facts['steps'] == 26
    assert facts['unlisted'] == {'older': NONE, 'newer': {'chunks': 2, 'steps': 2}}
    victim = sorted((tmp_path / 'replay').glob('*-12.npz'))[0]
    victim.unlink()
    (facts,) = inspect_logdir.replay(tmp_path, {'replay.size': 10})
    assert facts['missing'] == {'chunks': 1, 'steps': 12}
    text = '\n'.join(inspect_logdir.replay_lines(facts))
    assert 'Not listed: 2 chunk files (2 steps) written after the checkpoint' in text
    assert 'Missing: 1 chunk files (12 steps) the checkpoint lists' in text
    # The replay is full (replay.size 10), so older unlisted files count as evicted.
    old = chunklib.Chunk(8, time='20000101T000000F000000')
    old.append({'x': np.int64(0), 'is_first': True})
    old.save(tmp_path / 'replay')
    (facts,) = inspect_logdir.replay(tmp_path, {'replay.size': 10})
    lines = inspect_logdir.replay_lines(facts)
    assert 'Not listed: 1 chunk files (1 steps) older than the checkpoint: evicted' in lines[1]
