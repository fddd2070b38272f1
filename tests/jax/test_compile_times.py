"""The compile-time record that lets a run say how long its compilation usually takes."""

import json

import jax.numpy as jnp

from embodied.jax import compile_times


def test_announce_says_the_median_of_earlier_runs(tmp_path):
    times = compile_times.CompileTimes(str(tmp_path / 'sub' / 'times.json'))
    key = compile_times.signature('train', {'w': jnp.zeros((2, 3))})
    assert times.announce(key, 'train step') == 'Compiling the train step...'
    for seconds in (10, 30, 20):
        times.record(key, seconds)
    assert times.usual(key) == 20
    assert times.announce(key, 'train step') == (
        'Compiling the train step, usually 20 s on this device (less if cached)...'
    )


def test_only_the_newest_measurements_are_kept(tmp_path):
    path = tmp_path / 'times.json'
    times = compile_times.CompileTimes(str(path))
    for seconds in range(compile_times.KEEP + 3):
        times.record('k', seconds)
    assert json.loads(path.read_text())['k'] == list(range(3, compile_times.KEEP + 3))


def test_keys_differ_by_step_and_shapes_and_dtypes():
    tree = {'w': jnp.zeros((2, 3))}
    keys = {
        compile_times.signature('train', tree),
        compile_times.signature('report', tree),
        compile_times.signature('train', {'w': jnp.zeros((2, 4))}),
        compile_times.signature('train', {'w': jnp.zeros((2, 3), jnp.int32)}),
    }
    assert len(keys) == 4
    assert compile_times.signature('train', tree) == compile_times.signature('train', tree)


def test_off_or_unreadable_records_change_nothing(tmp_path):
    off = compile_times.CompileTimes('')
    off.record('k', 3)
    assert off.usual('k') is None
    broken = tmp_path / 'times.json'
    broken.write_text('{not json')
    times = compile_times.CompileTimes(str(broken))
    assert times.usual('k') is None
    times.record('k', 4)
    assert times.usual('k') == 4
    # A folder that cannot be created is not an error either.
    (tmp_path / 'file').write_text('')
    compile_times.CompileTimes(str(tmp_path / 'file' / 'times.json')).record('k', 1)
