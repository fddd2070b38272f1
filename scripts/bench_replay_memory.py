"""Resident replay bytes per stored step of a config, on this tree and on a baseline checkout.

Usage: python scripts/bench_replay_memory.py [--base DIR] [--configs atari ...] [--key value ...]

For each tree, a subprocess with that tree first on the import path builds the environment's
spaces and the model's extra spaces (no parameters, nothing trained) and sums the arrays that a
replay chunk holds per step: observations, actions, the stored latents and the step id. Prints
one row per key, the totals, the memory at `replay.size`, and the ratio to the baseline.
"""

import argparse
import importlib.util
import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load_estimator():
    """This tree's replay_memory module, loaded from its file (the baseline has none)."""
    path = ROOT / 'embodied' / 'run' / 'replay_memory.py'
    spec = importlib.util.spec_from_file_location('replay_memory', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def measure(argv):
    """Bytes per key of one stored step, for the tree that `dreamerv3` is imported from."""
    import elements
    import jax.numpy as jnp

    import dreamerv3
    from dreamerv3 import config as configlib
    from embodied.envs import registry
    from embodied.jax import nets

    if hasattr(registry, 'make_env'):
        make_env = registry.make_env
    else:  # older trees build envs in dreamerv3.factories or dreamerv3.main
        try:
            from dreamerv3.factories import make_env
        except ImportError:
            from dreamerv3.main import make_env

    config, _ = configlib.parse(argv)
    env = make_env(config, 0)
    obs_space = {k: v for k, v in env.obs_space.items() if not k.startswith('log/')}
    act_space = {k: v for k, v in env.act_space.items() if k != 'reset'}
    env.close()
    nets.COMPUTE_DTYPE = getattr(jnp, config.jax.compute_dtype)
    # The model reads its `agent` section and `replay_context`, in every version.
    model_config = elements.Config(**config.agent, replay_context=config.replay_context)
    from dreamerv3.agent import Model

    model = Model(obs_space, act_space, model_config)
    estimator = load_estimator()
    spaces = {**obs_space, **act_space, **model.ext_space}
    spaces = {k: v for k, v in spaces.items() if k not in estimator.STREAM_KEYS}
    rows = {
        k: [str(v.dtype), list(v.shape), estimator.step_bytes({k: v})] for k, v in spaces.items()
    }
    return {
        'tree': str(pathlib.Path(dreamerv3.__file__).resolve().parents[1]),
        'size': int(config.replay.size),
        'rows': rows,
        'total': estimator.step_bytes(spaces),
    }


def run_tree(tree, flags):
    """`measure` in a subprocess that imports the packages of `tree`."""
    env = {**os.environ, 'PYTHONPATH': str(tree), 'JAX_PLATFORMS': 'cpu'}
    cmd = [sys.executable, __file__, '--measure', *flags]
    result = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    if result.returncode:
        sys.exit(f'Measuring {tree} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}')
    return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--base', default='/tmp/base', help='baseline checkout to compare with')
    parser.add_argument('--measure', action='store_true', help=argparse.SUPPRESS)
    args, flags = parser.parse_known_args()
    flags = flags or ['--configs', 'atari']
    if args.measure:
        print(json.dumps(measure(flags)))
        return
    base, new = run_tree(pathlib.Path(args.base), flags), run_tree(ROOT, flags)
    print(f'Config: {" ".join(flags)}; baseline {base["tree"]}, current {new["tree"]}')
    print(f'{"key":<14} {"baseline":>22} {"bytes":>7}   {"current":>22} {"bytes":>7}')
    for key in sorted(set(base['rows']) | set(new['rows'])):
        cells = []
        for result in (base, new):
            dtype, shape, nbytes = result['rows'].get(key, ['-', [], 0])
            cells.append(f'{dtype + str(tuple(shape)):>22} {nbytes:>7}')
        print(f'{key:<14} {cells[0]}   {cells[1]}')
    ratio = new['total'] / base['total']
    gib = lambda result: result['total'] * result['size'] / 2**30
    print(
        f'Bytes per step: baseline {base["total"]}, current {new["total"]}, ratio {ratio:.3f}; '
        f'at replay.size {new["size"]:.0e}: {gib(base):.1f} GiB -> {gib(new):.1f} GiB.'
    )


if __name__ == '__main__':
    main()
