"""How the replay stores the replay-context latents: compact, and exactly rebuildable.

The world model's per-step entries (`dyn/deter`, `dyn/stoch`, under the module prefixes `enc/`,
`dyn/`, `dec/`) are stored next to every observation so that a sampled sequence can start from
the latent state the model had there. The model computes `deter` in the compute dtype and
`stoch` as one-hot vectors, so the replay keeps

- floating entries in the compute dtype; bfloat16 as its raw bits in uint16, because neither
  `.npz` files nor `portal` messages carry a bfloat16 type;
- one-hot entries as their class indices, in the smallest unsigned integer type that holds
  them.

Both are lossless: the agent rebuilds the very arrays the model produced. Replays written with
the earlier layout (float32 `deter`, float32 one-hot `stoch`) are converted on request, by
`python -m dreamerv3.tools.upgrade_replay FOLDER` (`upgrade_directory`); a run that finds such
chunks stops before compiling and names that command (`check_folder`). This module uses numpy
only, so replay processes need no JAX.
"""

import time

import elements
import numpy as np

# Keys with these prefixes are model entries (the rest of a step are observations and actions).
CONTEXT_PREFIXES = ('enc/', 'dyn/', 'dec/')
# Model entries that are one-hot over their last axis and stored as class indices.
ONEHOT_KEYS = ('dyn/stoch',)
# The bits of these compute dtypes are stored in an unsigned integer of the same width.
BITS_DTYPES = {'bfloat16': np.uint16}
COMPUTE_DTYPES = ('float32', 'bfloat16', 'float16')


def is_context(key: str) -> bool:
    """Whether a stored key is a model entry of the replay context."""
    return key.startswith(CONTEXT_PREFIXES)


def dtype_name(compute_dtype) -> str:
    """'float32', 'bfloat16' or 'float16' for a dtype or its name."""
    name = compute_dtype if isinstance(compute_dtype, str) else np.dtype(compute_dtype).name
    if name not in COMPUTE_DTYPES:
        raise ValueError(f'Compute dtype {name!r} is not one of {COMPUTE_DTYPES}.')
    return name


def storage_dtype(compute_dtype) -> np.dtype:
    """The dtype that stores floating model entries computed in `compute_dtype`."""
    name = dtype_name(compute_dtype)
    return np.dtype(BITS_DTYPES.get(name, name))


def index_dtype(classes: int) -> np.dtype:
    """The smallest unsigned integer dtype that holds the indices of `classes` classes."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if classes - 1 <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    raise ValueError(f'{classes} classes do not fit a uint32 index.')


def compact_space(key: str, space: elements.Space, compute_dtype) -> elements.Space:
    """The stored space of a model entry whose values have the space `space`."""
    if key in ONEHOT_KEYS:
        classes = space.shape[-1]
        return elements.Space(index_dtype(classes), space.shape[:-1], 0, classes)
    if np.issubdtype(space.dtype, np.floating):
        return elements.Space(storage_dtype(compute_dtype), space.shape)
    return space


def compact_array(key: str, value: np.ndarray, compute_dtype) -> np.ndarray:
    """A stored model entry in the compact layout, from the model's values or any stored layout.

    One-hot entries become class indices; floating entries are rounded to the compute dtype like
    the model's own cast, and stored bfloat16 bits are read back as bfloat16 first. Arrays that
    are already compact are returned unchanged.
    """
    value = np.asarray(value)
    if key in ONEHOT_KEYS:
        if np.issubdtype(value.dtype, np.floating):
            return value.argmax(-1).astype(index_dtype(value.shape[-1]))
        return value
    target = storage_dtype(compute_dtype)
    if value.dtype == target:
        return value
    if value.dtype in BITS_DTYPES.values():
        value = value.view(_float_dtype('bfloat16'))
    elif not np.issubdtype(value.dtype, np.floating):
        return value
    name = dtype_name(compute_dtype)
    rounded = value.astype(_float_dtype(name))
    return rounded.view(target) if name in BITS_DTYPES else rounded


def needs_upgrade(key: str, dtype: np.dtype, compute_dtype) -> bool:
    """Whether a stored array of a chunk file differs from the compact layout."""
    if not is_context(key):
        return False
    if key in ONEHOT_KEYS:
        return bool(np.issubdtype(dtype, np.floating))
    floating = np.issubdtype(dtype, np.floating) or dtype in BITS_DTYPES.values()
    return bool(floating and dtype != storage_dtype(compute_dtype))


def upgrade_directory(directory, compute_dtype, log=print) -> int:
    """Rewrite the chunk files of `directory` that use another layout; returns their number.

    Each file is replaced atomically by a chunk with the same name and compact arrays, so a
    replay directory of an earlier version (or of another compute dtype) loads and trains.
    """
    from embodied.core import chunks as chunklib

    if directory is None:
        return 0  # a replay in memory only
    directory = elements.Path(directory)
    if not directory.exists():
        return 0
    paths = [p for p in sorted(directory.glob('*.npz')) if is_stale(p, compute_dtype)]
    if not paths:
        return 0
    name = dtype_name(compute_dtype)
    log(
        f'Replay {directory}: converting {len(paths)} chunk files to the compact layout '
        f'(latents in {name}, one-hot entries as indices).'
    )
    before = after = 0
    start = last = time.time()
    for index, path in enumerate(paths):
        chunk = chunklib.Chunk.load(path)
        before += chunk.nbytes
        chunk.data = {
            k: compact_array(k, v, name) if is_context(k) else v for k, v in chunk.data.items()
        }
        chunk.nbytes = sum(v.nbytes for v in chunk.data.values())
        after += chunk.nbytes
        chunk.save(directory)
        if time.time() - last >= 10:
            last = time.time()
            log(f'  converted {index + 1}/{len(paths)} chunk files')
    log(
        f'Replay {directory}: converted {len(paths)} chunk files in {time.time() - start:.1f}s, '
        f'{before / 2**20:.1f} MiB -> {after / 2**20:.1f} MiB in memory.'
    )
    return len(paths)


def check_folder(directory, compute_dtype) -> None:
    """Raise SetupError, naming the command that converts them, when a replay folder holds
    chunks in another layout; reads the array headers of its newest chunk file only."""
    from embodied.core.base import SetupError

    directory = elements.Path(directory)
    if not directory.isdir():
        return
    newest = max(directory.glob('*.npz'), key=lambda p: p.name, default=None)
    if newest is None or not is_stale(newest, compute_dtype):
        return
    name = dtype_name(compute_dtype)
    option = '' if name == 'bfloat16' else f' --compute_dtype {name}'
    raise SetupError(
        f'The replay in {directory} holds chunks of an earlier layout (float32 or one-hot '
        f'latents); convert them once with: python -m dreamerv3.tools.upgrade_replay '
        f'{directory}{option}'
    )


def is_stale(path, compute_dtype) -> bool:
    """Whether a chunk file holds a model entry in another layout (reads only array headers)."""
    import zipfile

    try:
        with elements.Path(path).open('rb') as f, zipfile.ZipFile(f) as archive:
            for member in archive.namelist():
                key = member.removesuffix('.npy')
                if not is_context(key):
                    continue
                with archive.open(member) as array:
                    version = np.lib.format.read_magic(array)
                    read = (
                        np.lib.format.read_array_header_1_0
                        if version == (1, 0)
                        else np.lib.format.read_array_header_2_0
                    )
                    _, _, dtype = read(array)
                if needs_upgrade(key, dtype, compute_dtype):
                    return True
    except (OSError, ValueError, zipfile.BadZipFile):
        return False  # the replay reports unreadable chunks itself when it loads them
    return False


def _float_dtype(name: str) -> np.dtype:
    if name == 'bfloat16':
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)
