"""Acting throughput of a JAX-native task: the device loop against the host driver, side by side.

Both run the agent's policy on `--envs` environments without training (the device loop with
zero updates per iteration, the host driver with the envs in this process, one jitted step
per env), and print env steps per second for each, alternating the two `--repeats` times:

    python scripts/bench_device.py --task gymnax_CartPole-v1 --envs 16 256
    python scripts/bench_device.py --task craftax_Craftax-Classic-Pixels-v1 --envs 16 256

With `--train`, it measures `train_device` itself for `--seconds` after compiling: the device
loop with updates at the train ratio for `--seeds` seeds, from an empty replay of `--replay`
items per seed. It prints env steps and updates per second, the peak device memory and the
hours to 1M env steps per seed (one JSON object per setting):

    python scripts/bench_device.py --train --task craftax_Craftax-Classic-Pixels-v1 \
        --configs craftax size12m --seeds 8 -- --jax.platform cuda

With `--update`, it times one update inside the device loop (an iteration of one environment
that makes one update, on a replay filled to the batch's needs), the train step as it runs in
the compiled loop, to compare with `scripts/bench_train.py`'s jitted update:

    python scripts/bench_device.py --update --task craftax_Craftax-Classic-Pixels-v1

Extra arguments after `--` go to the config, e.g. `-- --jax.platform cuda`.
"""

import argparse
import functools
import json
import pathlib
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))


def build(task, envs, extra, configs=('size1m',), replay=None):
    """(config, agent) for the task with these presets and `envs` environments."""
    from dreamerv3 import config as configlib
    from dreamerv3 import main

    logdir = tempfile.mkdtemp(prefix='bench_device-')
    replay = replay or envs * 400
    argv = ['--configs', *configs, '--task', task, '--run.envs', str(envs)]
    argv += ['--jax.platform', 'cpu', '--replay.size', str(replay), '--logdir', logdir]
    argv += ['--jax.precompile', 'False', *extra]
    summaries = {name: script.summary for name, script in main.SCRIPTS.items()}
    config, _ = configlib.parse(argv, summaries, environ={})
    return config, main.make_agent(config)


def make_program(config, agent, seeds):
    """The device loop of `seeds` with `run.envs` environments each, and its initial state."""
    from embodied.envs import registry
    from embodied.run import train_device

    program = train_device.make_program(config, agent, registry.make_jax_env(config), seeds)
    return program, program.init([agent.init_params(s) for s in seeds])


def device_rate(config, agent, seconds, chunk):
    """Env steps per second of the device loop (policy, env steps, replay writes)."""
    import numpy as np

    envs = config.run.envs
    program, state = make_program(config, agent, [config.seed])
    start = time.monotonic()
    program.compile(state, chunk)
    compile_s = time.monotonic() - start
    zeros = np.zeros(chunk, np.int32)
    state, out = program(state, zeros)  # warm up
    steps, start = 0, time.monotonic()
    while time.monotonic() - start < seconds:
        state, out = program(state, zeros)
        np.asarray(out['episodes']['done'])  # wait for the call
        steps += chunk * envs
    return steps / (time.monotonic() - start), compile_s


def host_rate(config, agent, seconds):
    """Env steps per second of the host driver with the envs in this process."""
    from embodied.core import driver as driverlib
    from embodied.envs import registry

    envs = config.run.envs
    fns = [functools.partial(registry.make_env, config, i) for i in range(envs)]
    driver = driverlib.Driver(fns, parallel=False)
    driver.reset(agent.init_policy)
    policy = functools.partial(agent.policy, mode='train')
    driver(policy, steps=4 * envs)  # warm up: compiles the policy and the env step
    steps, start = 0, time.monotonic()
    while time.monotonic() - start < seconds:
        driver(policy, steps=envs)
        steps += envs
    driver.close()
    return steps / (time.monotonic() - start)


def train_rate(config, agent, seconds, chunk, seeds):
    """Env steps and updates per second of train_device's loop, with its peak device memory."""
    import jax
    import numpy as np

    from embodied.core import clock

    program, state = make_program(config, agent, [config.seed + i for i in range(seeds)])
    start = time.monotonic()
    program.compile(state, chunk)
    compile_s = time.monotonic() - start
    ratio = clock.Ratio(config.run.train_ratio / (config.batch_size * config.batch_length))
    steps, updates, timed_steps, timed_updates = 0, 0, 0, 0
    start = None
    while start is None or time.monotonic() - start < seconds:
        counts = program.schedule(ratio, steps, chunk)
        state, out = program(state, counts)
        np.asarray(out['episodes']['done'])  # wait for the call
        steps += chunk
        updates += int(counts.sum())
        if start is None and updates:
            start = time.monotonic()  # time from the first call that trained
        elif start is not None:
            timed_steps += chunk * config.run.envs
            timed_updates += int(counts.sum())
    duration = time.monotonic() - start
    stats = jax.devices()[0].memory_stats() or {}
    rate = timed_steps / duration
    return {
        'compile_s': round(compile_s, 1),
        'env_steps_per_s_per_seed': round(rate, 1),
        'updates_per_s_per_seed': round(timed_updates / duration, 2),
        'peak_memory_gib': round(stats.get('peak_bytes_in_use', 0) / 2**30, 2) or None,
        'hours_to_1m_steps': round(1e6 / rate / 3600, 1),
    }


def update_seconds(config, agent, updates):
    """Seconds of each of `updates` one-update iterations of the device loop, one seed."""
    import numpy as np

    program, state = make_program(config, agent, [config.seed])
    fill = config.batch_size + config.batch_length + config.replay_context
    state, _ = program(state, np.zeros(fill, np.int32))  # jitted for this length on the call
    start = time.monotonic()
    program.compile(state, 1)
    compile_s = time.monotonic() - start
    seconds = []
    for _ in range(updates + 1):  # the first call is a warm-up
        start = time.monotonic()
        state, out = program(state, np.ones(1, np.int32))
        np.asarray(out['metrics'][next(iter(out['metrics']))])  # wait for the call
        seconds.append(time.monotonic() - start)
    return {'compile_s': round(compile_s, 1), 'seconds': [round(x, 3) for x in seconds[1:]]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--task', default='gymnax_CartPole-v1')
    parser.add_argument('--envs', type=int, nargs='+', default=[16, 256])
    parser.add_argument('--seconds', type=float, default=20)
    parser.add_argument('--repeats', type=int, default=2)
    parser.add_argument('--chunk', type=int, default=32)
    parser.add_argument('--train', action='store_true', help='time train_device itself')
    parser.add_argument('--configs', nargs='+', default=['size1m'])
    parser.add_argument('--seeds', type=int, nargs='+', default=[1])
    parser.add_argument('--replay', type=int, default=100_000, help='items per seed (--train)')
    parser.add_argument('--update', action='store_true', help='time one update in the loop')
    parser.add_argument('--updates', type=int, default=3, help='timed updates (--update)')
    args, extra = parser.parse_known_args()
    extra = [x for x in extra if x != '--']
    if args.update:
        config, agent = build(args.task, 1, extra, args.configs, replay=2000)
        result = update_seconds(config, agent, args.updates)
        median = float(sorted(result['seconds'])[len(result['seconds']) // 2])
        setting = {'task': args.task, 'configs': ' '.join(args.configs)}
        print(json.dumps({**setting, **result, 'median_s_per_update': median}), flush=True)
        print(f'Done: {args.updates} updates, median {median:.2f} s each.')
        return
    if args.train:
        for envs in args.envs:
            for seeds in args.seeds:
                config, agent = build(args.task, envs, extra, args.configs, args.replay)
                result = train_rate(config, agent, args.seconds, args.chunk, seeds)
                setting = {'task': args.task, 'configs': ' '.join(args.configs)}
                print(json.dumps({**setting, 'envs': envs, 'seeds': seeds, **result}), flush=True)
        print(f'Done: {len(args.envs) * len(args.seeds)} setting(s).')
        return
    rows = []
    for envs in args.envs:
        config, agent = build(args.task, envs, extra)
        device, host = [], []
        for repeat in range(args.repeats):
            rate, compile_s = device_rate(config, agent, args.seconds, args.chunk)
            device.append(rate)
            host.append(host_rate(config, agent, args.seconds))
            print(
                f'{args.task} envs={envs} repeat={repeat}: device {device[-1]:,.0f} env steps/s '
                f'(compiled in {compile_s:.0f} s), host {host[-1]:,.0f} env steps/s',
                flush=True,
            )
        rows.append((envs, max(device), max(host)))
    print('\n| task | envs | device loop env steps/s | host driver env steps/s | ratio |')
    print('|---|---:|---:|---:|---:|')
    for envs, device, host in rows:
        print(f'| {args.task} | {envs} | {device:,.0f} | {host:,.0f} | {device / host:.1f}x |')
    print(f'Done: {len(rows)} setting(s), best of {args.repeats} alternating runs each.')


if __name__ == '__main__':
    main()
