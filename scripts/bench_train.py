"""Seconds per training update of the DreamerV3 agent, for any presets and flags.

Builds the agent exactly as `python -m dreamerv3.main` would, feeds it random batches of the
configured shape and times `agent.train` after a warm-up, printing JSON:

    python scripts/bench_train.py --configs debug --jax.platform cpu
    python scripts/bench_train.py --configs atari size12m --jax.platform cuda --updates 50
"""

import argparse
import json
import platform
import time

import numpy as np
import tqdm

from dreamerv3 import config as configlib
from dreamerv3 import factories


def random_batch(agent, config, rng):
    """A batch of random values with the spaces and shape the agent trains on."""
    length = config.batch_length + config.replay_context
    batch = {}
    for key, space in agent.spaces.items():
        shape = (config.batch_size, length, *space.shape)
        if key == 'consec':
            batch[key] = np.zeros(shape, np.int32)
        elif np.issubdtype(space.dtype, np.floating):
            batch[key] = rng.uniform(-1, 1, shape).astype(space.dtype)
        elif space.dtype == bool:
            batch[key] = rng.uniform(0, 1, shape) < 0.05
        else:
            low = np.maximum(space.low, 0)
            high = np.minimum(space.high, 255 if space.dtype == np.uint8 else 2**16)
            batch[key] = rng.integers(low, high, shape).astype(space.dtype)
    return batch


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--updates', type=int, default=20)
    parser.add_argument('--warmup', type=int, default=3)
    args, rest = parser.parse_known_args()
    config, _ = configlib.parse(['--logdir', '/tmp/bench_train', *rest])
    start = time.time()
    agent = factories.make_factories(config)['make_agent']()
    import jax  # after the agent configured JAX

    build = time.time() - start
    rng = np.random.default_rng(0)
    batches = [agent.stream(iter([random_batch(agent, config, rng)])) for _ in range(2)]
    batches = [next(iter(b)) for b in batches]
    carry = agent.init_train(config.batch_size)
    start = time.time()
    for i in range(args.warmup):
        carry, _, _ = agent.train(carry, batches[i % 2])
    warmup = time.time() - start
    durations = []
    for i in tqdm.trange(args.updates, desc='updates'):
        start = time.time()
        carry, outs, metrics = agent.train(carry, batches[i % 2])
        jax.block_until_ready((carry, outs, metrics))
        durations.append(time.time() - start)
    print(
        json.dumps(
            dict(
                configs=rest,
                device=str(jax.devices()[0]),
                processor=platform.processor(),
                batch=[config.batch_size, config.batch_length],
                build_s=round(build, 1),
                warmup_s=round(warmup, 1),
                sec_per_update=round(float(np.median(durations)), 4),
                updates_per_s=round(1 / float(np.median(durations)), 2),
                replayed_steps_per_s=round(
                    config.batch_size * config.batch_length / float(np.median(durations)), 1
                ),
            )
        )
    )


if __name__ == '__main__':
    main()
