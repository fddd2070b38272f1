"""Checkpoints: verified, durable saves that keep the newest few, and loading them with errors a
user can act on.

The layout is the one `elements.Checkpoint` writes, so logdirs of earlier versions still load:

    <directory>/latest             name of the newest complete checkpoint
    <directory>/<time>/<name>.pkl  one pickle per saveable (<name>-0000.pkl ... for generators)
    <directory>/<time>/done        written last; JSON with the size and SHA-256 of every file
    <directory>/corrupt/<time>/    checkpoints that failed verification or whose save was cut
                                   off (no `done`), set aside instead of loaded or pruned

Only a `done` whose checksums verify loads. `elements.Checkpoint` (earlier versions of this
project) writes an empty `done`, which cannot be told apart from a damaged one and does not
load; writing `{"format": 0}` into it declares the older format, checked only by unpickling.
A folder is deleted only by pruning after a save, once the checkpoint just written is newer.

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

from ..core import chunks as chunklib
from ..core.chunks import sync_directory
from . import reference_checkpoint

# Version of the `done` file's content. Format 0, without checksums, is the one of
# elements.Checkpoint; its empty `done` must declare it to load.
FORMAT = 1
OLDER_FORMAT = '{"format": 0}'
# Why a folder without `done` is not loaded, and why one with an empty `done` is not.
CUT_OFF = 'it has no done marker, its save was cut off, so its files cannot be verified'
EMPTY = (
    'its done marker is empty, so its files cannot be verified (a save that was cut off, or '
    'one of an earlier version without checksums)'
)
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


class Unverifiable(Corrupt):
    """A checkpoint folder whose `done` marker is empty: cut off, or of the older format."""


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
                f"Saving the checkpoint '{folder}' failed: {str(e).rstrip('.')}. Nothing of it "
                f'was kept and {kept}. Free disk space or make the logdir writable first.'
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
        print(f'Saved checkpoint: {folder}')
        return folder

    @elements.timer.section('checkpoint_load')
    def load(self):
        """Load the newest checkpoint that verifies; newer damaged or cut off ones are set aside."""
        found = complete(self._directory)
        if not found:
            raise CheckpointError(f"No complete checkpoint found in '{self._directory}'.")
        folder, data, skipped = read_newest(found, list(self._saveables))
        cutoff = [p for p in unfinished(self._directory) if p.name > folder.name]
        for p in cutoff:
            elements.print(f'Skipping the checkpoint {p}: {CUT_OFF}.', color='red')
        if skipped or cutoff:
            # Out of the way, so they are not pruned as kept checkpoints or tried again.
            for bad in [bad for bad, _ in skipped] + cutoff:
                moved = _set_aside(self._directory, bad)
                if any(bad == p and reason == EMPTY for p, reason in skipped):
                    elements.print(
                        f'If an earlier version wrote {moved}, move it back to '
                        f"{self._directory} and write {OLDER_FORMAT} into its 'done' to load it.",
                        color='red',
                    )
            corrupt = self._directory / 'corrupt'
            elements.print(f'Moved the skipped checkpoints to {corrupt}.', color='red')
            _write_atomic(self._directory / 'latest', folder.name.encode())
        elements.print(f'Loading checkpoint: {folder}')
        for name, saveable in self._saveables.items():
            saveable.load(data[name])
        print('Loaded checkpoint.')
        return folder

    def load_or_save(self):
        """Resume from the newest verifying checkpoint, or save the first one if none exists.

        Temporary files that a killed write left in the checkpoint directory and in the folders
        of the saveables (a replay's `directory`) are removed first.
        """
        self.remove_temporary()
        if self.latest():
            print('Found existing checkpoint.')
            return self.load()
        print('Did not find any checkpoint.')
        return self.save()

    def remove_temporary(self) -> int:
        """Delete the temporary files of interrupted writes, printing how many per folder."""
        total = 0
        found = [(self._directory, remove_temporary(self._directory))]
        for saveable in self._saveables.values():
            # Saveables that keep files of their own (replays) name their folder `directory`.
            folder = getattr(saveable, 'directory', None)
            if isinstance(folder, (str, os.PathLike, elements.Path)) and str(folder):
                found.append((folder, chunklib.remove_temporary(folder)))
        for folder, count in found:
            if count:
                files = 'file' if count == 1 else 'files'
                print(f'Removed {count} temporary {files} of an interrupted write in {folder}.')
            total += count
        return total

    def _cleanup(self, newest):
        """Prune the folders older than `newest`, the checkpoint this process just wrote.

        Complete ones beyond `keep` and cut off ones older than a complete checkpoint are
        deleted. A cut off folder newer than every other complete checkpoint holds a save that
        was never loaded (its files may be intact): it is set aside, never deleted.
        """
        names = [p.name for p in complete(self._directory)]
        keep = set(names[: self._keep])
        previous = next((n for n in names if n < newest.name), None)
        for entry in folders(self._directory):
            if entry.name in keep or entry.name >= newest.name:
                continue
            if not is_complete(entry) and (previous is None or entry.name > previous):
                moved = _set_aside(self._directory, entry)
                elements.print(f'Moved the checkpoint {entry} to {moved}: {CUT_OFF}.', color='red')
                continue
            # The marker goes first: a process killed while deleting leaves a folder without
            # one, older than a complete checkpoint, which the next save deletes.
            if (entry / 'done').exists():
                (entry / 'done').remove()
            entry.remove(recursive=True)


def unfinished(directory) -> list:
    """Checkpoint folders without a `done` marker (a save cut off, or pruning), newest first."""
    return [p for p in reversed(folders(directory)) if not is_complete(p)]


def remove_temporary(directory) -> int:
    """Delete `latest` and `done` files of a killed write in a checkpoint directory; how many."""
    directory = elements.Path(directory)
    if '://' in str(directory) or not directory.isdir():
        return 0
    leftovers = [directory / f'latest{chunklib.TEMPORARY}']
    leftovers += [p / f'done{chunklib.TEMPORARY}' for p in folders(directory)]
    removed = 0
    for path in leftovers:
        if os.path.isfile(str(path)):
            os.remove(str(path))
            removed += 1
    return removed


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


def checksums(folder) -> dict | None:
    """The recorded {file: {bytes, sha256}} of a folder's `done`; None if it declares format 0.

    Raises Unverifiable for an empty marker and Corrupt for an unreadable or damaged one.
    """
    try:
        marker = (elements.Path(folder) / 'done').read_bytes()
    except OSError as e:
        raise Corrupt(f'its done marker cannot be read ({e})') from e
    if not marker.strip():
        raise Unverifiable(EMPTY)
    try:
        content = json.loads(marker)
    except ValueError as e:
        raise Corrupt(f'its done marker is damaged ({e})') from e
    if not isinstance(content, dict):
        raise Corrupt('its done marker is damaged (not a JSON object)')
    if 'files' in content:
        if not isinstance(content['files'], dict):
            raise Corrupt('its done marker is damaged (its files are not a mapping)')
        return content['files']
    version = content.get('format')
    if version == 0 and not isinstance(version, bool):
        return None
    raise Corrupt(f'its done marker lists no checksums and does not declare {OLDER_FORMAT}')


def read(folder, names, trust_empty=False):
    """Verify and unpickle the saveables `names` of one folder; raises Corrupt or KeyError.

    With `trust_empty`, a folder with an empty `done` (written by an earlier version or by the
    reference implementation) loads too, checked only by unpickling, with a note.
    """
    folder = elements.Path(folder)
    try:
        sums = checksums(folder)
    except Unverifiable:
        if not trust_empty:
            raise
        print(
            f'Note: {folder} has an empty done marker (written by an earlier version or by the '
            'reference implementation), so its files are checked only by unpickling.'
        )
        sums = None
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


def read_newest(folders, names, trust_empty=False):
    """(folder, data, skipped) of the first of `folders` that verifies; CheckpointError if none.

    `skipped` lists (folder, reason) of the newer ones that did not verify; each is printed.
    `trust_empty` is passed to `read`.
    """
    skipped, unverifiable = [], []
    for folder in folders:
        try:
            data = read(folder, names, trust_empty)
        except Unverifiable as e:
            elements.print(f'Skipping the checkpoint {folder}: {e}.', color='red')
            skipped.append((folder, str(e)))
            unverifiable.append(folder)
            continue
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
    older = ''
    if unverifiable:
        # The usual case: a logdir of an earlier version, whose done markers are all empty.
        older = (
            f'If an earlier version wrote {unverifiable[0]} and you trust its files, declare '
            f"its format and run the same command again: echo '{OLDER_FORMAT}' > "
            f"'{unverifiable[0] / 'done'}' (it is then checked only by unpickling). "
        )
    raise CheckpointError(
        f'No checkpoint can be loaded, none verifies ({reasons}). The checkpoints were '
        f'left as they are. {older}To start this logdir again from scratch (its replay chunks and '
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
    """Load only the agent's parameters from another run's checkpoint (the newest that verifies).

    Checkpoints of the reference implementation (danijar/dreamerv3) load too, although their
    `done` is empty: their entries are renamed to this agent's names first.
    """
    # A checkpoint the user names explicitly may come from an earlier version or from the
    # reference implementation, whose done markers are empty.
    folder, data, _ = read_newest(candidates(path), ['agent'], trust_empty=True)
    print(f'Loading agent parameters from {folder}' + (f' matching {regex!r}' if regex else ''))
    state = data['agent']
    expected = getattr(agent, 'params', None)
    loadfn = functools.partial(agent.load, regex=regex) if regex else agent.load
    try:
        if isinstance(expected, dict):
            state = reference_checkpoint.adapt(state, expected, regex, str(folder))
        loadfn(state)
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
        if not isinstance(expected, dict) or not {'bytes', 'sha256'} <= set(expected):
            raise Corrupt(f'its done marker is damaged (no size and checksum for {name})')
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
    with chunklib.atomic_file(path) as f:
        f.write(content)
    sync_directory(path.parent)


def _set_aside(directory, folder):
    """Move a folder that must not load or be pruned to `<directory>/corrupt/`; its new path."""
    corrupt = elements.Path(directory) / 'corrupt'
    corrupt.mkdir()
    target, index = corrupt / folder.name, 1
    while target.exists():
        # A folder of the same name was set aside before; keep both.
        target, index = corrupt / f'{folder.name}-{index}', index + 1
    os.replace(str(folder), str(target))
    return target


def _remove(folder):
    """Delete a partly written checkpoint folder, ignoring errors (the disk may be full)."""
    try:
        if folder.exists():
            folder.remove(recursive=True)
    except OSError:
        pass
