"""How far a run is: a tqdm bar on an interactive terminal, one short line per log otherwise.

Both show the same fields: steps done of the total, steps per second, updates per second (for
scripts that train), the estimated time left and the mean score of the last episodes.
"""

import datetime
import os
import sys
import time

import tqdm
from tqdm.contrib import DummyTqdmFile

# A total of at least this many steps means "no limit" (the default `run.steps` is 1e10; the
# longest published DreamerV3 runs take 1e8): no percentage and no time left are shown.
UNBOUNDED = 10**9


class Progress:
    """Progress of a loop that counts `unit` from `start` to `total`.

    On a terminal (`out.isatty()`), `update` moves a tqdm bar and everything the run prints
    meanwhile is written above the bar. Elsewhere `update` only remembers the numbers and
    `log` prints them as one line, called on the run's log clock.
    """

    def __init__(
        self,
        total: int,
        start: int = 0,
        unit: str = 'env steps',
        interactive: bool | None = None,
        out=None,
    ):
        self.out = out or sys.stdout
        if interactive is None:
            interactive = bool(getattr(self.out, 'isatty', lambda: False)())
        self.interactive = interactive
        self.total = int(total)
        self.unit = unit
        now = time.monotonic()
        self.mark = (now, int(start), None)  # time, step, updates at the last rate window
        self.rates = (None, None)  # steps/s, updates/s
        self.windowed = False  # whether a full rate window has passed
        self.step, self.updates, self.score = int(start), None, None
        self.bar = None
        self.stdout = None
        if interactive:
            # tqdm draws nothing on a terminal that reports no size (0 columns and rows).
            sized = width(self.out) > 0
            self.bar = tqdm.tqdm(
                total=None if self.total >= UNBOUNDED else self.total,
                initial=int(start),
                unit=f' {unit}',
                unit_scale=True,
                dynamic_ncols=sized,
                ncols=None if sized else 100,
                nrows=None if sized else 40,
                mininterval=0.5,
                smoothing=0.05,
                file=self.out,
            )
            # Prints of the run (saves, reports, warnings) go above the bar instead of through it.
            if self.out is sys.stdout:
                self.stdout = sys.stdout
                sys.stdout = DummyTqdmFile(self.out)

    def update(self, step: int, updates: int | None = None, score: float | None = None) -> None:
        """Record the current step, update count and mean score (and move the bar)."""
        self.step, self.updates, self.score = int(step), updates, score
        now = time.monotonic()
        then, before, updates_before = self.mark
        elapsed = now - then
        # Rates over windows of at least a second; until the first window closes, over the
        # time so far, so that a run shorter than a second shows them too.
        if elapsed > 0 and (elapsed >= 1.0 or not self.windowed):
            steps_per_s = (self.step - before) / elapsed
            updates_per_s = None
            if updates is not None and updates_before is not None:
                updates_per_s = (updates - updates_before) / elapsed
            self.rates = (steps_per_s, updates_per_s)
        if elapsed >= 1.0:
            self.mark = (now, self.step, updates)
            self.windowed = True
        elif updates_before is None and updates is not None:
            self.mark = (then, before, updates)
        if self.bar is not None:
            self.bar.update(self.step - self.bar.n)
            postfix = self.postfix()
            if postfix:
                self.bar.set_postfix_str(postfix, refresh=False)

    def postfix(self) -> str:
        """The fields the bar does not show itself: updates/s and the score."""
        parts = []
        if self.rates[1] is not None and self.unit != 'updates':
            parts.append(f'{self.rates[1]:.2f} updates/s')
        if self.score is not None:
            parts.append(f'score {self.score:.2f}')
        return ', '.join(parts)

    def line(self) -> str:
        """Every field in one short line."""
        unit = self.unit.capitalize()
        if self.total >= UNBOUNDED:
            parts = [f'{unit} {self.step:,} (no step limit)']
        else:
            percent = 100 * self.step / self.total if self.total else 100.0
            parts = [f'{unit} {self.step:,} / {self.total:,} ({percent:.1f}%)']
        steps_per_s, updates_per_s = self.rates
        if steps_per_s is not None:
            parts.append(f'{steps_per_s:.1f} {self.unit}/s')
        if updates_per_s is not None and self.unit != 'updates':
            parts.append(f'{updates_per_s:.2f} updates/s')
        if steps_per_s and self.total < UNBOUNDED:
            left = max(0, self.total - self.step) / steps_per_s
            parts.append(f'ETA {eta(left)}')
        if self.score is not None:
            parts.append(f'score {self.score:.2f}')
        return ' | '.join(parts)

    def log(self) -> None:
        """Print the progress line (only without a bar; the bar is always on screen)."""
        if self.bar is None:
            # One write: a newline printed on its own lets other threads' output in between.
            self.out.write(self.line() + '\n')
            self.out.flush()

    def close(self) -> None:
        """Remove the stdout redirection and leave the bar at its final state."""
        if self.stdout is not None:
            sys.stdout = self.stdout
            self.stdout = None
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def width(out) -> int:
    """Columns of the terminal behind `out` (0 when unknown)."""
    try:
        return os.get_terminal_size(out.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return 0


def eta(seconds: float) -> str:
    """Seconds as h:mm:ss, or days for very long runs."""
    if seconds > 99 * 86400:
        return f'{seconds / 86400:.0f} days'
    return str(datetime.timedelta(seconds=int(seconds)))
