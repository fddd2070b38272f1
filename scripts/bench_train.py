"""Seconds per training update of the DreamerV3 agent, for any presets and flags.

Builds the agent exactly as `python -m dreamerv3.main` would, feeds it random batches of the
configured shape and times `agent.train` after a warm-up, printing JSON:

    python scripts/bench_train.py --configs debug --jax.platform cpu
    python scripts/bench_train.py --configs atari size12m --jax.platform cuda --updates 50

With `--policy-envs N` it also reports the median milliseconds of one `agent.policy` call for
N environments after compilation (`policy_ms`). It also reports the page faults and the user
and system CPU seconds of the process per timed update.

On CPU, XLA's per-call temporaries are faster on huge pages; to measure with them, set the glibc
tunable before Python starts: `GLIBC_TUNABLES=glibc.malloc.hugetlb=1 python scripts/bench_train.py`.
"""

import argparse
import json
import platform
import resource
import time

import numpy as np
import tqdm

from dreamerv3 import config as configlib
from dreamerv3 import main as mainlib


def random_batch(spaces, config, rng):
    """Random values of the spaces the agent trains on, shape (B, T + context, ...)."""
    length = config.batch_length + config.replay_context
    return random_values(spaces, (config.batch_size, length), rng)


def random_obs(agent, envs, rng):
    """Random observations of the agent's observation space for `envs` environments."""
    obs = random_values(agent.obs_space, (envs,), rng)
    obs['is_first'][:] = False
    return obs


def random_values(spaces, prefix, rng):
    """Random arrays of the spaces with the leading axes `prefix`."""
    values = {}
    for key, space in spaces.items():
        shape = (*prefix, *space.shape)
        if key == 'consec':
            values[key] = np.zeros(shape, np.int32)
        elif np.issubdtype(space.dtype, np.floating):
            values[key] = rng.uniform(-1, 1, shape).astype(space.dtype)
        elif space.dtype == bool:
            values[key] = rng.uniform(0, 1, shape) < 0.05
        else:
            # Below 2**14 a uint16 entry also holds finite bfloat16 bits (stored latents).
            low = np.maximum(np.asarray(space.low, np.int64), 0)
            high = np.minimum(np.asarray(space.high, np.int64), 2**14)
            values[key] = rng.integers(low, high, shape).astype(space.dtype)
    return values


def time_updates(agent, carry, batches, updates, progress=False):
    """Seconds of each of `updates` train calls, each waited for, cycling through `batches`."""
    import jax

    durations = []
    steps = tqdm.trange(updates, desc='updates') if progress else range(updates)
    for i in steps:
        start = time.time()
        carry, outs, metrics = agent.train(carry, batches[i % len(batches)])
        jax.block_until_ready((carry, outs, metrics))
        durations.append(time.time() - start)
    return carry, durations


def per_update(before, after, updates):
    """Page faults and CPU seconds (user, system) of the process per timed update."""
    return dict(
        minor_faults_per_update=round((after.ru_minflt - before.ru_minflt) / updates),
        user_s_per_update=round((after.ru_utime - before.ru_utime) / updates, 3),
        sys_s_per_update=round((after.ru_stime - before.ru_stime) / updates, 3),
    )


def time_policy(agent, envs, calls, rng):
    """Median seconds of one policy call for `envs` environments, after three warm-up calls."""
    carry = agent.init_policy(envs)
    obs = random_obs(agent, envs, rng)
    for _ in range(3):
        carry, _, _ = agent.policy(carry, obs)
    durations = []
    for _ in range(calls):
        start = time.time()
        carry, _, _ = agent.policy(carry, obs)
        durations.append(time.time() - start)
    return float(np.median(durations))


def main(argv=None):
    """Entry point: build the agent of the flags, time its updates, print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--updates', type=int, default=20)
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--policy-envs', type=int, default=0)
    parser.add_argument('--policy-calls', type=int, default=50)
    args, rest = parser.parse_known_args(argv)
    config, _ = configlib.parse(['--logdir', '/tmp/bench_train', *rest])
    start = time.time()
    agent = mainlib.make_agent(config)
    import jax  # after the agent configured JAX

    build = time.time() - start
    rng = np.random.default_rng(0)
    batches = [agent.stream(iter([random_batch(agent.spaces, config, rng)])) for _ in range(2)]
    batches = [next(iter(b)) for b in batches]
    carry = agent.init_train(config.batch_size)
    start = time.time()
    for i in range(args.warmup):
        carry, _, _ = agent.train(carry, batches[i % 2])
    warmup = time.time() - start
    before = resource.getrusage(resource.RUSAGE_SELF)
    carry, durations = time_updates(agent, carry, batches, args.updates, progress=True)
    usage = per_update(before, resource.getrusage(resource.RUSAGE_SELF), args.updates)
    extra = {}
    if args.policy_envs:
        seconds = time_policy(agent, args.policy_envs, args.policy_calls, rng)
        extra = dict(policy_envs=args.policy_envs, policy_ms=round(1000 * seconds, 2))
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
                **usage,
                **extra,
            )
        )
    )


if __name__ == '__main__':
    main()
