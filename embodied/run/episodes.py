"""Per-episode statistics collected from driver transitions."""

import collections

import elements
import numpy as np


class EpisodeStats:
    """Accumulates each worker's episode and logs it when the episode ends.

    `episode/score` and `episode/length` (or `<prefix>/...`) go to the logger at once; the
    reward rate, policy videos of worker 0 and `log/` aggregates go to `epstats`, an
    `elements.Agg` the run loop logs on its clock.
    """

    def __init__(self, logger, epstats, prefix='episode', video_worker=0):
        self.logger = logger
        self.epstats = epstats
        self.prefix = prefix
        self.video_worker = video_worker
        self.episodes = collections.defaultdict(elements.Agg)
        self.history = collections.deque(maxlen=100)

    @elements.timer.section('episode_stats')
    def __call__(self, tran, worker):
        """Driver callback: add one transition of `worker`."""
        if tran['is_first']:
            self.episodes[worker].reset()
        episode = self.episodes[worker]
        episode.add('score', tran['reward'], agg='sum')
        # Length counts env steps, so the reset observation does not count.
        episode.add('length', 0 if tran['is_first'] else 1, agg='sum')
        episode.add('rewards', tran['reward'], agg='stack')
        for key, value in tran.items():
            value = np.asarray(value)
            if value.dtype == np.uint8 and value.ndim == 3:
                if worker == self.video_worker:
                    episode.add(f'policy_{key}', value, agg='stack')
            elif key.startswith('log/') and value.ndim == 0:
                episode.add(f'{key}/avg', value, agg='avg')
                episode.add(f'{key}/max', value, agg='max')
                episode.add(f'{key}/sum', value, agg='sum')
        if tran['is_last']:
            result = episode.result()
            self.history.append((float(result['score']), int(result['length'])))
            self.logger.add(
                {
                    'score': result.pop('score'),
                    'length': result.pop('length'),
                },
                prefix=self.prefix,
            )
            rewards = result.pop('rewards')
            if len(rewards) > 1:
                result['reward_rate'] = (np.abs(rewards[1:] - rewards[:-1]) >= 0.01).mean()
            self.epstats.add(result)

    def mean_score(self, last: int = 10) -> float | None:
        """The mean score of the last `last` finished episodes (None before the first ends)."""
        if not self.history:
            return None
        return float(np.mean([score for score, _ in self.history][-last:]))

    def summary(self, last=10):
        """A one-line summary of the finished episodes, for the end of a run."""
        if not self.history:
            return 'no episode finished'
        scores = [score for score, _ in self.history][-last:]
        return (
            f'{len(self.history)} recent episodes, mean score of the last {len(scores)}: '
            f'{np.mean(scores):.2f}'
        )
