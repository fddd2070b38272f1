"""Logger outputs chosen by `logger.outputs`."""

import json
import sys

import elements
import numpy as np
import pytest
import scope

from embodied.run import outputs


def write(logdir, names, records):
    """Log `records` (one dict per step) through the outputs `names`; returns the logger."""
    step = elements.Counter()
    logger = elements.Logger(step, outputs.make_outputs(logdir, names, '.*'))
    for record in records:
        step.increment(10)
        logger.add(record)
        logger.write()
    logger.close()
    return logger


def test_jsonl_writes_metrics_and_scores(tmp_path, capsys):
    write(
        tmp_path,
        ['jsonl'],
        [
            {'episode/score': 1.5, 'train/loss': 0.25, 'text': 'hello'},
            {'train/loss': 0.5, 'vector': np.arange(3.0)},
        ],
    )
    lines = (tmp_path / 'metrics.jsonl').read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        {'step': 10, 'episode/score': 1.5, 'train/loss': 0.25},
        {'step': 20, 'train/loss': 0.5},
    ]
    lines = (tmp_path / 'scores.jsonl').read_text().splitlines()
    assert [json.loads(line) for line in lines] == [{'step': 10, 'episode/score': 1.5}]
    # The terminal output is always there; its header names the agent step. Each file is
    # named once, not at every write.
    out = capsys.readouterr().out
    assert '[Agent Step 10]' in out
    assert out.count('metrics.jsonl') == 1 and out.count('scores.jsonl') == 1
    assert 'Writing metrics:' not in out


def test_scope_writes_what_it_can_store(tmp_path):
    video = np.zeros((4, 8, 8, 3), np.uint8)
    write(
        tmp_path,
        ['scope'],
        [
            {
                'episode/score': 2.0,
                'report/summary': 'text',
                'epstats/policy_image': video,
                # Scope rejects vectors and float images; they are left out, not failed on later.
                'vector': np.arange(3.0),
                'float_image': np.zeros((8, 8, 3), np.float32),
            }
        ],
    )
    reader = scope.Reader(tmp_path)
    assert set(reader.keys()) == {'episode/score', 'report/summary', 'epstats/policy_image'}
    steps, values = reader['episode/score']
    assert list(steps) == [10] and list(values) == [2.0]
    assert not (tmp_path / 'metrics.jsonl').exists()


@pytest.mark.parametrize('name, package', [('tensorboard', 'tensorflow'), ('wandb', 'wandb')])
def test_missing_package_is_named(tmp_path, monkeypatch, name, package):
    # A None entry in sys.modules makes `import package` fail like an absent package.
    monkeypatch.setitem(sys.modules, package, None)
    with pytest.raises(ImportError, match=f"'{name}' logger output needs the '{package}'"):
        outputs.make_outputs(tmp_path, [name], '.*')


def test_unknown_and_unavailable_outputs(tmp_path):
    with pytest.raises(ValueError, match="Unknown logger output 'csv'.*jsonl, scope"):
        outputs.make_outputs(tmp_path, ['csv'], '.*')
    with pytest.raises(ValueError, match="'expa' logger output .* not available"):
        outputs.make_outputs(tmp_path, ['expa'], '.*')
