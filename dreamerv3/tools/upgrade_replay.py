"""Convert the replay chunks of earlier versions to the compact layout, in place.

usage: python -m dreamerv3.tools.upgrade_replay FOLDER [--compute_dtype bfloat16]

Earlier versions stored the replay-context latents as float32 `deter` and float32 one-hot
`stoch`; this rewrites every such chunk file of a replay folder atomically, keeping its name, with
the latents as the current version stores them (`dreamerv3/replay_layout.py`). Chunks that
already have the layout are left alone, so running it twice does nothing the second time.
"""

import argparse
import os
import sys

import elements

from .. import replay_layout


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m dreamerv3.tools.upgrade_replay`; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog='python -m dreamerv3.tools.upgrade_replay',
        description='Convert the chunk files of a replay folder to the compact layout, in place.',
    )
    parser.add_argument('folder', help='a replay folder, e.g. ~/logdir/pong/replay')
    parser.add_argument(
        '--compute_dtype',
        default='bfloat16',
        choices=replay_layout.COMPUTE_DTYPES,
        help='the jax.compute_dtype of the runs that will train on it (default bfloat16)',
    )
    args = parser.parse_args(argv)
    folder = elements.Path(os.path.expanduser(args.folder))
    if not folder.exists() or not list(folder.glob('*.npz')):
        print(f"upgrade_replay: error: no chunk files (*.npz) in '{folder}'.", file=sys.stderr)
        return 2
    count = replay_layout.upgrade_directory(folder, args.compute_dtype)
    if not count:
        print(f'Replay {folder}: every chunk file already has the compact layout.')
    return 0


if __name__ == '__main__':
    sys.exit(main())
