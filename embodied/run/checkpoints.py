"""Checkpoints: verified, durable saves that keep the newest few, and loading them with errors a
user can act on.

The layout is the one `elements.Checkpoint` writes, so logdirs of earlier versions still load:

    <directory>/latest             name of the newest complete checkpoint
    <directory>/<time>/<name>.pkl  one pickle per saveable (<name>-0000.pkl ... for generators)
    <directory>/<time>/done        written last; JSON with the size and SHA-256 of every file
                                   (empty in checkpoints of earlier versions)
    <directory>/corrupt/<time>/    checkpoints that failed verification and were skipped

This module writes checkpoints itself instead of using `elements.Checkpoint`, which never calls
fsync (after a power loss a `done` marker can stand next to empty files), records no checksums,
loads only the folder `latest` names (one truncated file makes the logdir impossible to resume),
reports a failed save of a saveable only by an exception after part of the folder is written,
and counts incomplete folders among the `keep` it leaves.
"""

import datetime
import functools
import hashlib
import inspect
import json
import os
import pickle
import re
import threading

import elements

from ..core.chunks import sync_directory

# Version of the `done` file's content; a `done` without content predates checksums.
FORMAT = 1
# Folders are named by the time of the save (elements.timestamp): 20261201T090255F244123.
STAMP = re.compile(r'^\d{8}T\d{6}(F\d{6})?$')
# The checkpoint directories of a logdir: `ckpt` of the single-process scripts, and one per
# role of a `parallel` run.
ROLES = ('agent', 'replay', 'logger')


class CheckpointError(Exception):
    """A checkpoint is missing, damaged or does not fit the model; the message says what to do."""


class SaveFailed(CheckpointError):
    """Writing a checkpoint failed (disk full, read-only folder); the previous one is intact."""


class Corrupt(Exception):
    """A checkpoint folder whose files do not verify; the message names the file and why."""


class Checkpoint:
    """Saves and loads named saveables (objects with `save()` and `load(data)`) as one unit.

    Assign saveables as attributes (`checkpoint.agent = agent`). `save` writes a new folder and
    keeps the newest `keep` complete ones; `load` resumes from the newest one that verifies.
    """

    def __init__(self, directory, keep=1):
        if int(keep) < 1:
            raise ValueError(f'Checkpoint keep must be at least 1, got {keep}.')
        self._directory = elements.Path(directory)
        self._keep = int(keep)
        self._saveables = {}

    def __setattr__(self, name, value):
        if name.startswith('_'):
            return super().__setattr__(name, value)
        if not (callable(getattr(value, 'save', None)) and callable(getattr(value, 'load', None))):
            raise ValueError(f"Checkpointed object '{name}' must implement save() and load().")
        self._saveables[name] = value

    def __getattr__(self, name):
        if name.startswith('_'):
            raise AttributeError(name)
        try:
            return self._saveables[name]
        except KeyError:
            raise AttributeError(name) from None

    def latest(self):
        """The newest complete checkpoint folder (not verified), or None."""
        folders = complete(self._directory)
        return folders[0] if folders else None

    @elements.timer.section('checkpoint_save')
    def save(self):
        """Write every saveable into a new folder, mark it done and prune old ones; the folder.

        Raises SaveFailed when a file cannot be written (disk full, read-only folder, a
        replay chunk that failed): the partial folder is removed and `latest` still names the
        previous checkpoint.
        """
        folder = self._directory / elements.timestamp(millis=True)
        previous = self.latest()
        elements.print(f'Saving checkpoint: {folder}')
        try:
            write(folder, {k: v.save for k, v in self._saveables.items()})
        except OSError as e:
            _remove(folder)
            if previous:
                kept = (
                    f"the previous checkpoint '{previous}' is intact; running the same command "
                    'again resumes from it'
                )
            else:
                kept = 'no earlier checkpoint exists'
            raise SaveFailed(
                f"Saving the checkpoint '{folder}' failed: {e}. Nothing of it was kept and "
                f'{kept}. Free disk space or make the logdir writable first.'
            ) from e
        except BaseException:
            _remove(folder)
            raise
        try:
            _write_atomic(self._directory / 'latest', folder.name.encode())
            self._cleanup(folder)
        except OSError as e:
            # The checkpoint is complete: loading finds it by its done marker, not by `latest`.
            elements.print(f'Could not update latest or prune old checkpoints: {e}', color='red')
        print('Saved checkpoint.')
        return folder

    @elements.timer.section('checkpoint_load')
    def load(self):
        """Load the newest checkpoint that verifies; damaged newer ones move to `corrupt/`."""
        folders = complete(self._directory)
        if not folders:
            raise CheckpointError(f"No complete checkpoint found in '{self._directory}'.")
        folder, data, skipped = read_newest(folders, list(self._saveables))
        if skipped:
            # Out of the way, so they are not pruned as kept checkpoints or tried again.
            corrupt = self._directory / 'corrupt'
            corrupt.mkdir()
            for bad, _ in skipped:
                os.replace(str(bad), str(corrupt / bad.name))
            elements.print(f'Moved the skipped checkpoints to {corrupt}.', color='red')
            _write_atomic(self._directory / 'latest', folder.name.encode())
        elements.print(f'Loading checkpoint: {folder}')
        for name, saveable in self._saveables.items():
            saveable.load(data[name])
        print('Loaded checkpoint.')
        return folder

    def load_or_save(self):
        """Resume from the newest verifying checkpoint, or save the first one if none exists."""
        if self.latest():
            print('Found existing checkpoint.')
            return self.load()
        print('Did not find any checkpoint.')
        return self.save()

    def _cleanup(self, newest):
        """Delete complete checkpoints beyond `keep` and incomplete folders older than `newest`."""
        keep = {p.name for p in complete(self._directory)[: self._keep]}
        for entry in self._directory.glob('*'):
            if entry.name in ('latest', 'corrupt') or entry.name in keep or not entry.isdir():
                continue
            if entry.name < newest.name:
                # The marker goes first: a process killed while deleting leaves an incomplete
                # folder, which is never loaded and is pruned by the next save.
                if (entry / 'done').exists():
                    (entry / 'done').remove()
                entry.remove(recursive=True)


def complete(directory):
    """Checkpoint folders of `directory` that hold a `done` marker, newest first."""
    directory = elements.Path(directory)
    if not directory.exists():
        return []
    folders = [
        p
        for p in directory.glob('*')
        if p.name not in ('latest', 'corrupt') and (p / 'done').exists()
    ]
    return sorted(folders, key=lambda p: p.name, reverse=True)


def directories(logdir) -> list:
    """The checkpoint directories a logdir holds: `ckpt`, and `ckpt/<role>` of parallel runs."""
    root = elements.Path(logdir) / 'ckpt'
    if not root.isdir():
        return []
    return [root] + [root / role for role in ROLES if (root / role).isdir()]


def folders(directory) -> list:
    """Every checkpoint folder of a directory, complete or not, oldest first."""
    directory = elements.Path(directory)
    return sorted(p for p in directory.glob('*') if STAMP.match(p.name) and p.isdir())


def set_aside(directory) -> list:
    """The folders that failed verification and were moved to `<directory>/corrupt`."""
    corrupt = elements.Path(directory) / 'corrupt'
    return sorted(corrupt.glob('*')) if corrupt.isdir() else []


def latest_name(directory) -> str | None:
    """The folder name `latest` points at, or None."""
    path = elements.Path(directory) / 'latest'
    return path.read_text().strip() if path.exists() else None


def is_complete(folder) -> bool:
    """Whether a checkpoint folder holds its `done` marker."""
    return (elements.Path(folder) / 'done').exists()


def saved_at(folder) -> str:
    """The save time a checkpoint folder's name encodes, as YYYY-MM-DD HH:MM:SS ('' if none)."""
    name = elements.Path(folder).name
    if not STAMP.match(name):
        return ''
    fmt = '%Y%m%dT%H%M%SF%f' if 'F' in name else '%Y%m%dT%H%M%S'
    return datetime.datetime.strptime(name, fmt).strftime('%Y-%m-%d %H:%M:%S')


def peek(folder, name):
    """The unpickled `<name>.pkl` of a folder, unverified; None when absent or unreadable."""
    try:
        return pickle.loads((elements.Path(folder) / f'{name}.pkl').read_bytes())
    except Exception:
        return None


def write(folder, savefns):
    """Pickle each saveable into `folder`, fsync everything, then write the `done` marker."""
    folder = elements.Path(folder)
    if (folder / 'done').exists():
        raise FileExistsError(f'The checkpoint {folder} exists already.')
    folder.mkdir()
    files = {}
    for name, savefn in savefns.items():
        data = savefn()
        if inspect.isgenerator(data):
            for index, shard in enumerate(data):
                files[f'{name}-{index:04d}.pkl'] = _write_file(
                    folder, f'{name}-{index:04d}.pkl', shard
                )
        else:
            files[f'{name}.pkl'] = _write_file(folder, f'{name}.pkl', data)
    sync_directory(folder)
    marker = json.dumps({'format': FORMAT, 'files': files}, indent=1, sort_keys=True)
    _write_atomic(folder / 'done', marker.encode())


def read(folder, names):
    """Verify and unpickle the saveables `names` of one folder; raises Corrupt or KeyError."""
    folder = elements.Path(folder)
    try:
        marker = (folder / 'done').read_bytes()
    except OSError as e:
        raise Corrupt(f'its done marker cannot be read ({e})') from e
    try:
        sums = json.loads(marker)['files'] if marker.strip() else None
    except (ValueError, KeyError, TypeError) as e:
        raise Corrupt(f'its done marker is damaged ({e})') from e
    present = {p.name for p in folder.glob('*')}
    if sums is not None:
        missing = sorted(set(sums) - present)
        if missing:
            raise Corrupt(f'{missing[0]} is missing')
    data = {}
    for name in names:
        if f'{name}.pkl' in present:
            data[name] = _read_file(folder, f'{name}.pkl', sums)
        elif f'{name}-0000.pkl' in present:
            shards = sorted(n for n in present if n.startswith(f'{name}-') and n.endswith('.pkl'))
            data[name] = iter([_read_file(folder, n, sums) for n in shards])
        else:
            raise KeyError(name)
    return data


def read_newest(folders, names):
    """(folder, data, skipped) of the first of `folders` that verifies; CheckpointError if none.

    `skipped` lists (folder, reason) of the newer ones that did not verify; each is printed.
    """
    skipped = []
    for folder in folders:
        try:
            data = read(folder, names)
        except Corrupt as e:
            elements.print(f'Skipping the checkpoint {folder}: {e}.', color='red')
            skipped.append((folder, str(e)))
            continue
        except KeyError as e:
            raise CheckpointError(
                f"Checkpoint '{folder}' holds no '{e.args[0]}' (it has "
                f'{sorted(p.name for p in folder.glob("*.pkl"))}); it was probably written by '
                'another script. Use a new --logdir or the script that wrote it.'
            ) from e
        if skipped:
            elements.print(f'Resuming from the older checkpoint {folder}.', color='yellow')
        return folder, data, skipped
    reasons = '; '.join(f"'{folder}': {reason}" for folder, reason in skipped)
    raise CheckpointError(
        f'No checkpoint can be loaded, every one is damaged ({reasons}). The checkpoints were '
        'left as they are. To start this logdir again from scratch (its replay chunks and '
        f"metrics are kept), move the checkpoints away, e.g. 'mv {folders[0].parent} "
        f"{folders[0].parent}.damaged', and run the same command again; or pass a checkpoint "
        'of another run with --run.from_checkpoint and a new --logdir.'
    )


def candidates(path):
    """Complete checkpoint folders for a checkpoint folder, a ckpt directory or a logdir."""
    path = elements.Path(path)
    if (path / 'done').exists():
        return [path]
    for directory in (path, path / 'ckpt', path / 'ckpt' / ROLES[0]):
        folders = complete(directory)
        if folders:
            return folders
    raise CheckpointError(
        f"No complete checkpoint found at '{path}'. Pass a checkpoint folder (one that "
        "contains a 'done' file), its ckpt directory, or the logdir of a run that saved one."
    )


def resolve(path):
    """The newest complete checkpoint folder for a checkpoint folder, ckpt directory or logdir."""
    return candidates(path)[0]


def load_agent(agent, path, regex=''):
    """Load only the agent's parameters from another run's checkpoint (the newest that verifies)."""
    folder, data, _ = read_newest(candidates(path), ['agent'])
    print(f'Loading agent parameters from {folder}' + (f' matching {regex!r}' if regex else ''))
    loadfn = functools.partial(agent.load, regex=regex) if regex else agent.load
    try:
        loadfn(data['agent'])
    except ValueError as e:
        raise CheckpointError(str(e)) from e
    except (TypeError, AttributeError, KeyError) as e:
        raise CheckpointError(
            f"Checkpoint '{folder}' holds agent data this agent cannot read ({e}); it was "
            'probably written by another kind of agent, e.g. one run with --random_agent True.'
        ) from e


def load_or_save(checkpoint, directory):
    """Resume from the newest verifying checkpoint, or save the initial state when there is none."""
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


def _write_file(folder, name, data):
    """Pickle `data` into folder/name and fsync it; returns its size and checksum."""
    with elements.timer.section('checkpoint_pickle'):
        buffer = pickle.dumps(data)
    with elements.timer.section('checkpoint_write'):
        path = folder / name
        if '://' in str(path):
            path.write_bytes(buffer)
        else:
            with open(str(path), 'wb') as f:
                f.write(buffer)
                f.flush()
                os.fsync(f.fileno())
    return {'bytes': len(buffer), 'sha256': hashlib.sha256(buffer).hexdigest()}


def _read_file(folder, name, sums):
    """Read and unpickle folder/name, checking it against its recorded size and checksum."""
    try:
        buffer = (folder / name).read_bytes()
    except OSError as e:
        raise Corrupt(f'{name} cannot be read ({e})') from e
    if sums is not None:
        if name not in sums:
            raise Corrupt(f'{name} is not listed in its done marker')
        expected = sums[name]
        if len(buffer) != expected['bytes']:
            raise Corrupt(f'{name} has {len(buffer)} bytes instead of {expected["bytes"]}')
        if hashlib.sha256(buffer).hexdigest() != expected['sha256']:
            raise Corrupt(f'{name} does not match its checksum')
    try:
        return pickle.loads(buffer)
    except Exception as e:
        # Checkpoints without checksums are verified by whether they unpickle.
        raise Corrupt(f'{name} cannot be unpickled ({type(e).__name__}: {e})') from e


def _write_atomic(path, content):
    """Replace the file `path` with `content` through a synced temporary file and a rename."""
    if '://' in str(path):
        path.write_bytes(content)
        return
    tmp = f'{path}.tmp'
    with open(tmp, 'wb') as f:
        f.write(content)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, str(path))
    sync_directory(path.parent)


def _remove(folder):
    """Delete a partly written checkpoint folder, ignoring errors (the disk may be full)."""
    try:
        if folder.exists():
            folder.remove(recursive=True)
    except OSError:
        pass
