"""Logger outputs chosen by `logger.outputs`."""

import errno
import json
import os
import sys

import elements
import helpers
import numpy as np
import pytest
import scope

from dreamerv3 import main
from embodied.run import diskfull, outputs


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


def full_disk(monkeypatch, name, room=10):
    """Make the disk fill up after `room` more bytes of writes to the file `name`."""
    real = os.write
    left = [room]

    def write(fd, data):
        if not os.readlink(f'/proc/self/fd/{fd}').endswith(name):
            return real(fd, data)
        if not left[0]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        # As the kernel does, a write that does not fit writes what fits and says how much.
        written = real(fd, bytes(data[: left[0]]))
        left[0] -= written
        return written

    monkeypatch.setattr(outputs.os, 'write', write)


def records(path):
    """The records of a JSONL file; fails on a line that does not parse."""
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_full_disk_during_a_metrics_write_leaves_whole_lines(tmp_path, monkeypatch):
    output = outputs.JSONLOutput(tmp_path, 'metrics.jsonl')
    output([(10, 'loss', np.array(1.0))])
    full_disk(monkeypatch, 'metrics.jsonl')
    with pytest.raises(diskfull.DiskFull) as info:
        output([(20, 'loss', np.array(2.0)), (30, 'loss', np.array(3.0))])
    assert str(info.value) == (
        f'the disk is full: could not write {tmp_path / "metrics.jsonl"} (No space left on '
        'device). Free space and run the same command again to resume.'
    )
    # The part of the batch that was written is gone again.
    assert (tmp_path / 'metrics.jsonl').read_text() == '{"step": 10, "loss": 1.0}\n'
    monkeypatch.undo()
    output([(40, 'loss', np.array(4.0))])
    assert records(tmp_path / 'metrics.jsonl') == [
        {'step': 10, 'loss': 1.0},
        {'step': 40, 'loss': 4.0},
    ]


@pytest.mark.parametrize(
    'content, kept',
    [
        ('{"step": 1}\n{"step": 2}\n{"step": 3, "lo', 2),
        # A torn line with the next record glued to it, as earlier versions left them.
        ('{"step": 1}\n{"step": 2, "lo{"step": 3}\n', 1),
        ('{"step": 1, "lo', 0),
        ('{"step": 1}\n{"step": 2}\n', 2),
        ('', 0),
    ],
)
def test_a_torn_last_line_is_dropped_on_start(tmp_path, capsys, content, kept):
    path = tmp_path / 'metrics.jsonl'
    path.write_text(content)
    output = outputs.JSONLOutput(tmp_path, 'metrics.jsonl')
    torn = len(content) - len(''.join(content.splitlines(keepends=True)[:kept]))
    note = f'Dropped the incomplete last line of {path} ({torn} bytes)'
    assert (note in capsys.readouterr().out) == bool(torn)
    output([(9, 'loss', np.array(1.0))])
    assert records(path) == [{'step': i + 1} for i in range(kept)] + [{'step': 9, 'loss': 1.0}]


def test_a_torn_line_is_found_behind_long_lines(tmp_path):
    # The end of the file is read in blocks; the last complete line ends before the first one.
    line = json.dumps({'step': 1, 'text': 'x' * 100_000}) + '\n'
    (tmp_path / 'metrics.jsonl').write_text(line * 2 + '{"step": 2' + ' ' * 70_000)
    outputs.JSONLOutput(tmp_path, 'metrics.jsonl')
    assert (tmp_path / 'metrics.jsonl').read_text() == line * 2


def test_full_disk_during_a_scope_write_is_raised_by_close(tmp_path, monkeypatch):
    def full(*args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    # Scope appends in its own threads; the error must still end the run.
    monkeypatch.setattr(scope.formats, 'table_append', full)
    logger = outputs.Logger(elements.Counter(), outputs.make_outputs(tmp_path, ['scope'], '.*'))
    logger.add({'loss': 1.0})
    logger.write()
    with pytest.raises(diskfull.DiskFull, match='the disk is full: could not write .*scope'):
        logger.close()


def test_scope_tables_are_cut_to_whole_rows_on_start(tmp_path):
    write(tmp_path, ['scope'], [{'loss': 1.0, 'text': 'a'}, {'loss': 2.0, 'text': 'b'}])
    for name in ('scope/loss.float', 'scope/text.txt/index'):
        with open(tmp_path / name, 'ab') as f:
            f.write(b'\0' * 5)
    write(tmp_path, ['scope'], [{'loss': 3.0, 'text': 'c'}])
    reader = scope.Reader(tmp_path)
    assert list(reader['loss'][1]) == [1.0, 2.0, 3.0]
    assert len(reader['text'][0]) == 3


def test_full_disk_ends_the_command_with_one_line(tmp_path, monkeypatch):
    full_disk(monkeypatch, 'metrics.jsonl')
    flags = ('--random_agent', 'True', '--run.steps', '100', '--logger.outputs', 'jsonl')
    result = helpers.call(main.main, *helpers.argv(tmp_path, *flags))
    assert result.returncode == 2, helpers.output(result)
    assert result.stderr == (
        f'dreamerv3: error: the disk is full: could not write {tmp_path / "metrics.jsonl"} '
        '(No space left on device). Free space and run the same command again to resume.\n'
    )
    assert (tmp_path / 'metrics.jsonl').read_text() == ''


@pytest.mark.parametrize('code', [errno.ENOSPC, errno.EDQUOT, errno.EROFS])
def test_full_disk_writing_the_config_ends_the_command(tmp_path, monkeypatch, code):
    def save(config, path):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(elements.Config, 'save', save)
    result = helpers.call(main.main, *helpers.argv(tmp_path, '--random_agent', 'True'))
    assert result.returncode == 2, helpers.output(result)
    [line] = result.stderr.splitlines()
    reason = diskfull.REASONS[code]
    assert line.startswith(f'dreamerv3: error: {reason}: could not write {tmp_path}/config.yaml')
