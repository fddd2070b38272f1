"""The run's logger and its outputs, selected by name (`logger.outputs`)."""

import collections
import json

import elements
import numpy as np

OUTPUTS = ('jsonl', 'scope', 'tensorboard', 'wandb', 'expa')


def make_logger(
    config: elements.Config, unit: str = 'env steps', progress: bool = True
) -> elements.Logger:
    """The logger of a run: the outputs of `logger.outputs` and the terminal metrics block.

    `unit` is what the run's step counts: env steps are logged as env frames (times the suite's
    action repeat), `updates` as they are. A script with a `progress` display prints the
    metrics block only with `logger.terminal metrics`; the others (the parallel roles) always.
    """
    suite = config.task.split('_', 1)[0]
    multiplier = config.env.get(suite, {}).get('repeat', 1) if unit == 'env steps' else 1
    items = make_outputs(
        config.logdir, config.logger.outputs, config.logger.filter, config.logger.fps
    )
    if progress and config.logger.terminal != 'metrics':
        items = [item for item in items if not isinstance(item, elements.logger.TerminalOutput)]
    if not items:
        # elements.Logger needs an output; writing to no file at all is valid here.
        items = [lambda summaries: None]
    return elements.Logger(elements.Counter(), items, multiplier)


def make_outputs(logdir, outputs, pattern, fps=15, name='Agent'):
    """Terminal output plus one output per name in `outputs`."""
    result = [elements.logger.TerminalOutput(pattern, name)]
    for output in outputs:
        if output == 'jsonl':
            result.append(JSONLOutput(logdir, 'metrics.jsonl'))
            result.append(JSONLOutput(logdir, 'scores.jsonl', 'episode/score'))
        elif output == 'scope':
            result.append(ScopeFilter(elements.logger.ScopeOutput(logdir)))
        elif output == 'tensorboard':
            try:
                import tensorflow  # noqa: F401 (elements' TensorBoard output writes with it)
            except ImportError as e:
                raise missing('tensorboard', 'tensorflow', 'pip install tensorflow-cpu') from e
            result.append(elements.logger.TensorBoardOutput(logdir, fps))
        elif output == 'wandb':
            try:
                import wandb  # noqa: F401
            except ImportError as e:
                raise missing('wandb', 'wandb', 'pip install wandb') from e
            logdir = elements.Path(logdir)
            result.append(
                elements.logger.WandBOutput(
                    name=f'{logdir.parent.name}/{logdir.name}', project='dreamerv3', config=None
                )
            )
        elif output == 'expa':
            raise ValueError(
                "The 'expa' logger output is internal to its authors and not available; "
                f'choose from {", ".join(o for o in OUTPUTS if o != "expa")}.'
            )
        else:
            raise ValueError(
                f"Unknown logger output '{output}' in logger.outputs; "
                f'choose from {", ".join(OUTPUTS)}.'
            )
    return result


class JSONLOutput(elements.logger.JSONLOutput):
    """elements' JSONL output (one line of scalars per step), without a message per write.

    elements prints 'Writing metrics: <file>' from its writer thread at every log write: two
    lines per log next to the run's one progress line, and printed from another thread they can
    land in the middle of it. The file is named once, when the output is made.
    """

    def __init__(self, logdir, filename: str, pattern: str = r'.*'):
        super().__init__(logdir, filename, pattern)
        print(f'Writing metrics to {self._filename}')

    def _write(self, summaries):
        bystep = collections.defaultdict(dict)
        for step, name, value in summaries:
            scalar = isinstance(value, np.ndarray) and value.ndim == 0
            if scalar and self._pattern.search(name):
                bystep[step][name] = float(value)
        if bystep:
            lines = [
                json.dumps({'step': step, **scalars}) + '\n' for step, scalars in bystep.items()
            ]
            with self._filename.open('a') as f:
                f.write(''.join(lines))


def missing(output: str, module: str, install: str) -> ImportError:
    """The error for an output whose package is not installed."""
    return ImportError(
        f"The '{output}' logger output needs the '{module}' package: {install}, "
        f'or remove {output} from logger.outputs.'
    )


class ScopeFilter:
    """Passes on only the values Scope can store: scalars, text, uint8 images and videos."""

    def __init__(self, output):
        self.output = output

    def __call__(self, summaries):
        self.output([item for item in summaries if self.supported(item[2])])

    def wait(self):
        """Wait for pending writes, including the files Scope encodes in its own threads."""
        if hasattr(self.output, 'wait'):
            self.output.wait()
        writer = getattr(self.output, 'writer', None)
        if getattr(writer, 'futures', None) is not None:
            # Scope's flush returns before its pool has written the files; logger.close()
            # should leave complete files behind.
            list(writer.futures)

    @staticmethod
    def supported(value):
        if isinstance(value, str):
            return True
        value = np.asarray(value)
        if value.ndim == 0:
            return np.issubdtype(value.dtype, np.number) or value.dtype == bool
        if value.ndim in (3, 4) and value.dtype == np.uint8:
            return value.shape[-1] in (1, 3)
        return False
