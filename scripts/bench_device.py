"""Acting throughput of a JAX-native task: the device loop against the host driver, side by side.

Both run the agent's policy on `--envs` environments without training (the device loop with
zero updates per iteration, the host driver with the envs in this process, one jitted step
per env), and print env steps per second for each, alternating the two `--repeats` times:

    python scripts/bench_device.py --task gymnax_CartPole-v1 --envs 16 256
    python scripts/bench_device.py --task craftax_Craftax-Classic-Pixels-v1 --envs 16 256

Extra arguments after `--` go to the config, e.g. `-- --jax.platform cuda`.
"""

import argparse
import functools
import pathlib
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))


def build(task, envs, extra):
    """(config, agent) for the task at size1m with `envs` environments."""
    from dreamerv3 import config as configlib
    from dreamerv3 import main

    logdir = tempfile.mkdtemp(prefix='bench_device-')
    argv = ['--configs', 'size1m', '--task', task, '--run.envs', str(envs)]
    argv += ['--jax.platform', 'cpu', '--replay.size', str(envs * 400), '--logdir', logdir]
    argv += ['--jax.precompile', 'False', *extra]
    summaries = {name: script.summary for name, script in main.SCRIPTS.items()}
    config, _ = configlib.parse(argv, summaries, environ={})
    return config, main.make_agent(config)


def device_rate(config, agent, seconds, chunk):
    """Env steps per second of the device loop (policy, env steps, replay writes)."""
    import numpy as np

    from embodied.envs import registry
    from embodied.jax import device_loop

    env = registry.make_jax_env(config)
    envs = config.run.envs
    seeds = [[registry.env_seed(config.seed, i) for i in range(envs)]]
    program = device_loop.DeviceLoop(
        agent.model, env, config, [config.seed], seeds, agent.train_mesh
    )
    state = program.init([agent.init_params(config.seed)])
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--task', default='gymnax_CartPole-v1')
    parser.add_argument('--envs', type=int, nargs='+', default=[16, 256])
    parser.add_argument('--seconds', type=float, default=20)
    parser.add_argument('--repeats', type=int, default=2)
    parser.add_argument('--chunk', type=int, default=32)
    args, extra = parser.parse_known_args()
    extra = [x for x in extra if x != '--']
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
