"""The run's logger and its outputs, selected by name (`logger.outputs`)."""

import collections
import contextlib
import json
import os
import pathlib
import re
import struct

import elements
import numpy as np

from . import diskfull

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
    return Logger(elements.Counter(), items, multiplier)


class Logger(elements.Logger):
    """elements' Logger, except that a full disk during a write ends the run.

    elements' `close` prints and drops the errors of the outputs' pending writes; a DiskFull
    among them is raised here, so that the run exits with its message.
    """

    def write(self) -> None:
        """Write the added metrics to every output; they are dropped even if one fails."""
        try:
            super().write()
        finally:
            # Otherwise `close` after a failed write would print the same metrics again.
            self._metrics.clear()

    def close(self) -> None:
        """Write what is left and wait for the outputs; raises DiskFull if a write failed."""
        self.write()
        failed = None
        for output in self.outputs:
            if not hasattr(output, 'wait'):
                continue
            try:
                output.wait()
            except diskfull.DiskFull as e:
                failed = failed or e
            except Exception as e:
                print(f'Error waiting on output: {e}')
        if failed is not None:
            raise failed


def make_outputs(logdir, outputs, pattern, fps=15, name='Agent'):
    """Terminal output plus one output per name in `outputs`."""
    result = [elements.logger.TerminalOutput(pattern, name)]
    for output in outputs:
        if output == 'jsonl':
            result.append(JSONLOutput(logdir, 'metrics.jsonl'))
            result.append(JSONLOutput(logdir, 'scores.jsonl', 'episode/score'))
        elif output == 'scope':
            drop_torn_rows(elements.Path(logdir) / 'scope')
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


class JSONLOutput:
    """Appends one JSON line of scalars per step to `<logdir>/<filename>`, whole lines only.

    elements' JSONL output is not used: it appends through a buffered file in a writer thread,
    so a full disk leaves part of a line at the end of the file (the next run glues its first
    record to it: one unparsable line), its error reaches the run only at the next write or not
    at all (elements' Logger.close prints and drops it), and it prints a line per write. This
    one writes in the caller's thread, a batch of complete lines with one write on an append
    descriptor, removes what a failed write left, and drops a torn last line when it starts.
    """

    def __init__(self, logdir, filename: str, pattern: str = r'.*'):
        logdir = elements.Path(logdir)
        logdir.mkdir()
        self._filename = logdir / filename
        self._pattern = re.compile(pattern)
        drop_torn_line(self._filename)
        print(f'Writing metrics to {self._filename}')

    def __call__(self, summaries):
        bystep = collections.defaultdict(dict)
        for step, name, value in summaries:
            scalar = isinstance(value, np.ndarray) and value.ndim == 0
            if scalar and self._pattern.search(name):
                bystep[step][name] = float(value)
        if bystep:
            lines = [
                json.dumps({'step': step, **scalars}) + '\n' for step, scalars in bystep.items()
            ]
            append_lines(self._filename, ''.join(lines))


def append_lines(path: elements.Path, text: str) -> None:
    """Append complete lines to a file; a failed write leaves the file as it was.

    Raises DiskFull when the disk is full. The lines go out in one write to a descriptor opened
    with O_APPEND, so they land after whatever is there even if the file was truncated since.
    """
    if '://' in str(path):
        # Remote files cannot be appended to through a descriptor (nor truncated after a
        # failed write).
        with diskfull.writing(path), path.open('a') as f:
            f.write(text)
        return
    data = memoryview(text.encode())
    with diskfull.writing(path):
        fd = os.open(str(path), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            try:
                # A disk that fills up mid-write writes part of the data; writing the rest
                # then raises ENOSPC.
                while data:
                    data = data[os.write(fd, data) :]
            except BaseException:
                # The file has one writer (the run's logger), so its old size is where this
                # write began.
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, size)
                raise
        finally:
            os.close(fd)


def drop_torn_line(path: elements.Path) -> None:
    """Truncate a JSONL file after its last complete line, with a note when that drops one.

    A torn line (no line end, or one that does not parse) is what an interrupted or failed
    write of an earlier run left. Truncating is one system call and touches nothing before the
    cut, so a crash while doing it loses no complete line.
    """
    if '://' in str(path) or not os.path.isfile(str(path)):
        return
    with open(str(path), 'rb+') as f:
        size = f.seek(0, os.SEEK_END)
        end = complete_end(f, size)
        if end == size:
            return
        f.truncate(end)
    print(f'Dropped the incomplete last line of {path} ({size - end} bytes) of an earlier run.')


def complete_end(f, size: int) -> int:
    """The offset after the last line of a file that ends in a newline and parses as JSON."""
    block = 1 << 16
    while True:
        # Enough of the end of the file to hold its last two line ends, or all of it.
        start = max(0, size - block)
        f.seek(start)
        tail = f.read(size - start)
        last = tail.rfind(b'\n')
        before = tail.rfind(b'\n', 0, max(last, 0))
        if start == 0 or before >= 0:
            break
        block *= 4
    if last < 0:
        return 0
    try:
        json.loads(tail[before + 1 : last])
    except ValueError:
        # A torn line with the next record glued to it, as earlier versions left them.
        return start + before + 1
    return start + last + 1


def missing(output: str, module: str, install: str) -> ImportError:
    """The error for an output whose package is not installed."""
    return ImportError(
        f"The '{output}' logger output needs the '{module}' package: {install}, "
        f'or remove {output} from logger.outputs.'
    )


class ScopeFilter:
    """Passes on only the values Scope can store: scalars, text, uint8 images and videos.

    Scope writes in threads (elements' writer thread, then Scope's pool); a failed write is
    raised by the next call or by `wait`, as DiskFull when the disk is full.
    """

    def __init__(self, output):
        self.output = output
        self.directory = output.writer.logdir

    def __call__(self, summaries):
        with diskfull.writing(self.directory):
            self.output([item for item in summaries if self.supported(item[2])])

    def wait(self) -> None:
        """Wait for pending writes, including the files Scope encodes in its own threads."""
        with diskfull.writing(self.directory):
            if hasattr(self.output, 'wait'):
                self.output.wait()
            # elements' wait returns without raising the writer thread's error.
            future = getattr(self.output, '_future', None)
            if future is not None:
                future.result()
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


# Scope appends fixed-size rows to its tables: '<key>.float' files of scalars and the 'index'
# of each folder of files (text, images, videos). See scope.formats.
SCOPE_ROWS = {'*.float': struct.calcsize('>qd'), '*/index': struct.calcsize('q8s')}


def drop_torn_rows(directory: elements.Path) -> None:
    """Truncate Scope's tables to whole rows, dropping what a failed append left."""
    if '://' in str(directory) or not os.path.isdir(str(directory)):
        return
    for pattern, row in SCOPE_ROWS.items():
        for path in pathlib.Path(str(directory)).glob(pattern):
            size = path.stat().st_size
            if size % row:
                os.truncate(path, size - size % row)
                print(f'Dropped the incomplete last row of {path} of an earlier run.')
