"""Play episodes with a trained policy, print their scores and optionally save a video.

    python scripts/play.py --logdir ~/logdir/run1 --episodes 3 --video out.mp4
    python scripts/play.py --logdir ~/logdir/cartpole --task CartPole-v1 --video cartpole.mp4

The policy comes from `dreamerv3.load_policy` (the run's config.yaml and latest checkpoint).
The environment is the run's task, or `--task`: any task name (`atari_pong`, `dummy_disc`,
`gym_<id>`, `custom_<module>:<class>`) or a bare gymnasium id. The video shows the image
observation (`--video-key`), or the rendered frames of an environment that has no image
(gymnasium's classic-control envs render with pygame: `pip install 'gymnasium[classic-control]'`).
"""

import argparse
import sys

import numpy as np


def parse(argv):
    """The command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--logdir', required=True, help='run folder or checkpoint folder')
    parser.add_argument('--episodes', type=int, default=3, help='episodes to play')
    parser.add_argument('--task', default='', help='task name or gymnasium id (default: the run)')
    parser.add_argument('--video', default='', help='write the episodes as one mp4 file here')
    parser.add_argument('--video-key', default='', help='image observation for the video')
    parser.add_argument('--fps', type=int, default=15, help='frame rate of the video')
    parser.add_argument('--mode', default='eval', choices=['eval', 'train'], help='policy mode')
    parser.add_argument('--platform', default=None, help='cpu, cuda, ... (default: any)')
    parser.add_argument(
        '--max-steps', type=int, default=100000, help='cut an episode off after this many steps'
    )
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error('--episodes must be at least 1.')
    return args


def task_name(task):
    """A task name for make_env: bare gymnasium ids get the `gym_` suite prefix."""
    from embodied.envs import registry

    if not task or task.split('_', 1)[0] in registry.suites():
        return task
    return f'gym_{task}'


def same(a, b):
    """Whether two spaces (or None) agree in dtype, shape and bounds."""
    if a is None or b is None:
        return a is b
    return (
        a.dtype == b.dtype
        and a.shape == b.shape
        and np.array_equal(a.low, b.low)
        and np.array_equal(a.high, b.high)
    )


def check_spaces(policy, env):
    """Raise ValueError when the env's observations or actions differ from the policy's."""
    obs = {k: v for k, v in env.obs_space.items() if not k.startswith('log/')}
    act = {k: v for k, v in env.act_space.items() if k != 'reset'}
    for name, ours, theirs in (
        ('observation', policy.obs_space, obs),
        ('action', policy.act_space, act),
    ):
        diff = sorted(k for k in set(ours) | set(theirs) if not same(ours.get(k), theirs.get(k)))
        if diff:
            details = '; '.join(f'{k}: policy {ours.get(k)}, env {theirs.get(k)}' for k in diff)
            raise ValueError(
                f'The environment does not fit the policy ({name}s {details}). Play the task the '
                'run trained on, or one with the same spaces.'
            )


def video_key(env, requested):
    """The image observation key the video shows, or None to render frames instead."""
    images = [
        k
        for k, s in env.obs_space.items()
        if s.dtype == np.uint8 and len(s.shape) == 3 and s.shape[-1] in (1, 3)
    ]
    if requested:
        if requested not in images:
            raise ValueError(f'--video-key {requested!r} is not an image observation: {images}.')
        return requested
    return images[0] if images else None


def check_render(env, policy, task):
    """Raise ValueError, before the first episode, when the env cannot render frames."""
    env.step(policy.reset_action())
    try:
        frame = np.asarray(env.render())
    except Exception as e:  # Renderers fail in many ways, e.g. a missing pygame.
        raise ValueError(
            f'Task {task} could not render frames for the video ({type(e).__name__}: {e}). '
            'Install what the message names, or play without --video.'
        ) from e
    if frame.dtype != np.uint8 or frame.ndim != 3:
        raise ValueError(f'Task {task} renders {frame.dtype} {frame.shape}, not RGB frames.')


def play(policy, env, episodes, max_steps, frames=None, key=None):
    """Play `episodes` episodes; returns their (score, length) pairs."""
    results = []
    obs = env.step(policy.reset_action())
    for episode in range(episodes):
        score, length = 0.0, 0
        while True:
            if frames is not None:
                frames.append(np.asarray(obs[key]) if key else np.asarray(env.render()))
            if obs['is_last'] or length >= max_steps:
                break
            obs = env.step(policy(obs))
            score += float(obs['reward'])
            length += 1
        results.append((score, length))
        cut = ' (cut off)' if not obs['is_last'] else ''
        print(f'Episode {episode + 1}/{episodes}: score {score:.2f}, length {length}{cut}')
        obs = env.step(policy.reset_action())
    return results


def fail(error):
    """Print a command-line error without a traceback and exit with status 2."""
    print(f'play.py: error: {error}', file=sys.stderr)
    sys.exit(2)


def main(argv=None):
    """Entry point: load the policy, play, print the summary and write the video."""
    args = parse(sys.argv[1:] if argv is None else argv)
    import dreamerv3
    from dreamerv3.config import ConfigError
    from embodied import SetupError
    from embodied.envs import registry
    from embodied.run import checkpoints, videos

    try:
        policy = dreamerv3.load_policy(args.logdir, mode=args.mode, platform=args.platform)
        task = task_name(args.task) or policy.config.task
        env = policy.make_env(task=task)
        key = video_key(env, args.video_key) if args.video else None
        if args.video and key is None:
            if not task.startswith('gym_'):
                raise ValueError(
                    f'Task {task} has no image observation to record; play without --video.'
                )
            env.close()
            # Without an image observation, gymnasium renders the frames.
            env = policy.make_env(task=task, render_mode='rgb_array')
            check_render(env, policy, task)
        check_spaces(policy, env)
    except (checkpoints.CheckpointError, ConfigError, SetupError, registry.MissingSuiteError) as e:
        fail(e)
    except ValueError as e:
        fail(e)

    frames = [] if args.video else None
    try:
        results = play(policy, env, args.episodes, args.max_steps, frames, key)
    finally:
        env.close()
    scores = np.array([score for score, _ in results])
    lengths = np.array([length for _, length in results])
    print(
        f'Played {len(results)} episodes of {task}: mean score {scores.mean():.2f} '
        f'(min {scores.min():.2f}, max {scores.max():.2f}), mean length {lengths.mean():.1f}.'
    )
    if args.video:
        path = videos.write_mp4(args.video, np.stack(frames), args.fps)
        print(f'Wrote video: {path} ({len(frames)} frames).')


if __name__ == '__main__':
    main()
