"""Finding checkpoints and loading them with errors a user can act on."""

import functools
import threading

import elements


class CheckpointError(Exception):
    """A checkpoint is missing or does not fit the model; the message says what to do."""


def resolve(path):
    """The checkpoint folder for a checkpoint folder, a ckpt directory or a logdir."""
    path = elements.Path(path)
    for candidate in (path, path / 'ckpt', path / 'ckpt' / 'agent'):
        if (candidate / 'done').exists():
            return candidate
        if (candidate / 'latest').exists():
            folder = candidate / (candidate / 'latest').read_text().strip()
            if (folder / 'done').exists():
                return folder
    raise CheckpointError(
        f"No complete checkpoint found at '{path}'. Pass a checkpoint folder (one that "
        "contains a 'done' file), its ckpt directory, or the logdir of a run that saved one."
    )


def load_agent(agent, path, regex=''):
    """Load only the agent's parameters from another run's checkpoint."""
    folder = resolve(path)
    print(f'Loading agent parameters from {folder}' + (f' matching {regex!r}' if regex else ''))
    loadfn = functools.partial(agent.load, regex=regex) if regex else agent.load
    try:
        elements.checkpoint.load(folder, dict(agent=loadfn))
    except KeyError as e:
        raise CheckpointError(f"Checkpoint '{folder}' holds no agent.") from e
    except ValueError as e:
        raise CheckpointError(str(e)) from e
    except (TypeError, AttributeError) as e:
        raise CheckpointError(
            f"Checkpoint '{folder}' holds agent data this agent cannot read ({e}); it was "
            'probably written by another kind of agent, e.g. one run with --random_agent True.'
        ) from e


def load_or_save(checkpoint, directory):
    """Resume from the latest checkpoint, or save the initial state when there is none."""
    try:
        checkpoint.load_or_save()
    except ValueError as e:
        raise CheckpointError(
            f'{e}\nThe checkpoint in {directory} was written by a run with a '
            'different model. Use a new --logdir, or restore the config of that run.'
        ) from e


class SerialSaver:
    """Saves one checkpoint from several threads, one save at a time.

    The parallel roles save on their clock in the main thread and once more when the agent
    role calls `stop` in a server thread. Two saves at once would both prune the same old
    folder, and the second would crash the role.
    """

    def __init__(self, checkpoint):
        self.checkpoint = checkpoint
        self.lock = threading.Lock()

    def save(self):
        """Save the checkpoint once no other thread is saving it."""
        with self.lock:
            self.checkpoint.save()
