"""Process-wide JAX configuration: platform, XLA flags, jit, transfer guard, compute dtype and
the persistent compilation cache.

Environment-based settings (XLA_FLAGS, XLA_PYTHON_CLIENT_PREALLOCATE) only take effect before
the JAX backend starts. Call `setup()` before any JAX computation; calling it later with
settings the running backend cannot honour raises a RuntimeError instead of silently
ignoring them.
"""

import os
import re
import subprocess
import sys
from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp
from jax.experimental.compilation_cache import compilation_cache

from . import nets

GPU_PLATFORMS = ('cuda', 'gpu', 'rocm')
COMPUTE_DTYPES = ('float32', 'bfloat16', 'float16')

# The folder of the persistent compilation cache when `compilation_cache` is True, the value
# configs of earlier versions hold; configs/dreamerv3.yaml names the same folder.
DEFAULT_CACHE_DIR = '~/.cache/dreamerv3/jax'

# JAX only stores programs that took at least 1 s to compile. On CPU the policy step of small
# models (the debug preset) and their initialisers compile in less than that on an idle machine,
# so they would compile again in every run. Single operations, which eager execution (jit
# disabled) compiles one by one, usually in milliseconds, stay out: each would add a file.
CACHE_MIN_COMPILE_SECS = 0.1

GPU_FLAGS = (
    '--xla_disable_hlo_passes=rematerialization',
    '--xla_gpu_all_gather_combine_threshold_bytes=134217728',
    '--xla_gpu_all_reduce_combine_threshold_bytes=134217728',
    '--xla_gpu_enable_all_gather_combine_by_dim=false',
    '--xla_gpu_enable_highest_priority_async_stream=true',
    '--xla_gpu_enable_latency_hiding_scheduler=true',
    '--xla_gpu_enable_pipelined_all_gather=true',
    '--xla_gpu_enable_pipelined_all_reduce=true',
    '--xla_gpu_enable_pipelined_reduce_scatter=true',
    '--xla_gpu_enable_reduce_scatter_combine_by_dim=false',
    '--xla_gpu_enable_triton_gemm=false',
    '--xla_gpu_enable_triton_softmax_fusion=false',
    '--xla_gpu_enable_while_loop_double_buffering=true',
    '--xla_gpu_graph_level=0',
    '--xla_gpu_reduce_scatter_combine_threshold_bytes=67108864',
)

TPU_FLAGS = (
    '--xla_disable_hlo_passes=rematerialization',
    '--xla_tpu_megacore_fusion_allow_ags=false',
    '--xla_enable_async_collective_permute=true',
    '--xla_tpu_enable_ag_backward_pipelining=true',
    '--xla_tpu_enable_data_parallel_all_reduce_opt=true',
    '--xla_tpu_data_parallel_opt_different_sized_ops=true',
    '--xla_tpu_enable_async_collective_fusion=true',
    '--xla_tpu_enable_async_collective_fusion_multiple_steps=true',
    '--xla_tpu_overlap_compute_collective_tc=true',
    '--xla_enable_async_all_gather=true',
)

# With jax.debug on CPU: XLA's MLIR fusion emitters take most of the compile time of small
# programs, and the older emitters compile the debug model's train step about twice as fast
# (docs/benchmarks.md). Results differ only by float rounding. The flag exists from jaxlib 0.6
# on; older versions abort on unknown flags, so they do without it.
CPU_DEBUG_FLAGS = ('--xla_cpu_use_fusion_emitters=false',)
CPU_DEBUG_FLAGS_SINCE = (0, 6)


def xla_flags(
    platform: str | None = None,
    deterministic: bool = True,
    autotune: int = 1,
    mock_devices: int = 0,
    xladump: str = '',
    gpuflags: bool = True,
    tpuflags: bool = False,
    debug: bool = False,
) -> list[str]:
    """The list of XLA flags that setup() writes to XLA_FLAGS."""
    flags = []
    # The GPU flags stay out of CPU and TPU runs: XLA_FLAGS is part of the key of JAX's
    # persistent compilation cache, and flags without effect would only keep a CPU process
    # from reusing what another CPU process (started with other flags) compiled.
    if platform is None or platform in GPU_PLATFORMS:
        flags.append(f'--xla_gpu_autotune_level={autotune}')
        if deterministic:
            flags.append('--xla_gpu_deterministic_ops=true')
    if mock_devices:
        flags.append(f'--xla_force_host_platform_device_count={mock_devices}')
    if xladump:
        flags.append(f'--xla_dump_to={xladump}')
        flags.append('--xla_dump_hlo_as_long_text')
    if gpuflags and platform in GPU_PLATFORMS:
        flags += GPU_FLAGS
    if tpuflags and platform == 'tpu':
        flags += TPU_FLAGS
    if debug and platform == 'cpu' and jaxlib_version() >= CPU_DEBUG_FLAGS_SINCE:
        flags += CPU_DEBUG_FLAGS
    return flags


def jaxlib_version() -> tuple[int, ...]:
    """The installed jaxlib's (major, minor) version."""
    from jaxlib import version

    return tuple(int(part) for part in version.__version__.split('.')[:2])


# Newer XLA removed some flags of the reference set and aborts on unknown flags. When one is
# missing, its replacement (if any) takes its place.
REPLACEMENTS = {
    '--xla_gpu_graph_level': '--xla_gpu_enable_command_buffer=',
}

_SUPPORTED = {}


def supported_flags(flags: Iterable[str]) -> list[str]:
    """Drop the flags that the installed XLA does not know (probed once in a subprocess)."""
    flags = tuple(flags)
    if flags in _SUPPORTED:
        return list(_SUPPORTED[flags])
    env = {**os.environ, 'XLA_FLAGS': ' '.join(flags), 'JAX_PLATFORMS': 'cpu'}
    proc = subprocess.run(
        [sys.executable, '-c', 'import jax; jax.devices()'],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    match = re.search(r'Unknown flags in XLA_FLAGS: (.*)', proc.stderr)
    unknown = set(match.group(1).split()) if match else set()
    kept = [f for f in flags if f not in unknown]
    for flag in sorted(unknown):
        name = flag.split('=', 1)[0]
        if name in REPLACEMENTS:
            kept.append(REPLACEMENTS[name])
    if unknown:
        print(f'XLA does not know these flags, leaving them out: {" ".join(sorted(unknown))}')
    _SUPPORTED[flags] = tuple(kept)
    return kept


def merge_flags(existing: str, flags: Iterable[str]) -> str:
    """Keep flags from an existing XLA_FLAGS string that `flags` does not set, then `flags`."""
    flags = list(flags)
    names = {f.split('=', 1)[0] for f in flags}
    kept = [f for f in existing.split() if f.split('=', 1)[0] not in names]
    return ' '.join(kept + list(flags))


def target_env(
    platform: str | None = None,
    deterministic: bool = True,
    autotune: int = 1,
    mock_devices: int = 0,
    xladump: str = '',
    gpuflags: bool = True,
    tpuflags: bool = False,
    prealloc: bool = True,
    debug: bool = False,
) -> dict[str, str]:
    """Environment variables setup() writes: XLA_FLAGS (merged) and the allocator setting."""
    flags = xla_flags(
        platform, deterministic, autotune, mock_devices, xladump, gpuflags, tpuflags, debug
    )
    if (gpuflags and platform in GPU_PLATFORMS) or (tpuflags and platform == 'tpu'):
        flags = supported_flags(flags)
    return {
        'XLA_FLAGS': merge_flags(os.environ.get('XLA_FLAGS', ''), flags),
        'XLA_PYTHON_CLIENT_PREALLOCATE': str(bool(prealloc)).lower(),
    }


def backends_initialized() -> bool:
    """Whether a JAX backend has started in this process (works on jax 0.4.33 to 0.10)."""
    try:
        from jax._src import xla_bridge
    except ImportError:  # pragma: no cover
        return False
    fn = getattr(xla_bridge, 'backends_are_initialized', None)
    if fn is not None:
        return bool(fn())
    return bool(getattr(xla_bridge, '_backends', None))


def _distributed_initialized():
    try:
        from jax._src import distributed
    except ImportError:  # pragma: no cover
        return False
    return getattr(distributed.global_state, 'client', None) is not None


def _resolve_dtype(compute_dtype):
    name = compute_dtype if isinstance(compute_dtype, str) else jnp.dtype(compute_dtype).name
    if name not in COMPUTE_DTYPES:
        raise ValueError(f"compute_dtype '{name}' is not supported: use one of {COMPUTE_DTYPES}.")
    return getattr(jnp, name)


def _check_running_backend(platform, mock_devices, env):
    """Raise if the already running backend contradicts the requested settings."""
    hint = 'Call embodied.jax.setup() before any JAX computation, or run in a fresh process.'
    running = jax.default_backend()
    if platform:
        wanted = 'gpu' if platform in GPU_PLATFORMS else platform
        if running != wanted:
            raise RuntimeError(
                f"JAX already runs on platform '{running}' but setup() asks for '{platform}'. "
                + hint
            )
    # Mock devices are per process: a multi-host run counts those of every process globally.
    if mock_devices and running == 'cpu' and jax.local_device_count() != mock_devices:
        raise RuntimeError(
            f'JAX already runs with {jax.local_device_count()} CPU devices but setup() asks '
            f'for mock_devices={mock_devices}. ' + hint
        )
    if running != 'cpu':
        # On accelerators the flags and the allocator setting matter, so they must match.
        for key, value in env.items():
            if os.environ.get(key, '') != value:
                raise RuntimeError(
                    f"JAX already started with {key}='{os.environ.get(key, '')}' but setup() "
                    f"needs '{value}'. " + hint
                )


def setup(
    platform: str | None = None,
    compute_dtype: str | Any = 'bfloat16',
    mock_devices: int = 0,
    prealloc: bool = True,
    jit: bool = True,
    debug: bool = False,
    transfer_guard: bool = True,
    deterministic: bool = True,
    autotune: int = 1,
    gpuflags: bool = True,
    tpuflags: bool = False,
    xladump: str = '',
    debug_nans: bool = False,
    process_id: int = -1,
    num_processes: int = 1,
    coordinator_address: str = '',
    compilation_cache: str | bool = DEFAULT_CACHE_DIR,
) -> None:
    """Configure JAX for this process (flags, platform, multi-host, compilation cache) and set
    nets.COMPUTE_DTYPE.

    `compilation_cache` is the folder of JAX's persistent compilation cache ('' or False: off,
    True: DEFAULT_CACHE_DIR); JAX_COMPILATION_CACHE_DIR, when set, names the folder instead.
    """
    dtype = _resolve_dtype(compute_dtype)
    env = target_env(
        platform,
        deterministic,
        autotune,
        mock_devices,
        xladump,
        gpuflags,
        tpuflags,
        prealloc,
        debug,
    )
    if backends_initialized():
        _check_running_backend(platform, mock_devices, env)
    else:
        if xladump:
            import elements

            elements.Path(xladump).mkdir()
        os.environ.update(env)
        if platform:
            jax.config.update('jax_platforms', platform)
    if deterministic:
        os.environ['TF_CUDNN_DETERMINISTIC'] = '1'

    jax.config.update('jax_disable_most_optimizations', bool(debug))
    jax.config.update('jax_disable_jit', not jit)
    # The guard would reject the implicit transfers of eager (jit=False) execution, and
    # debug_nans re-runs ops eagerly, so only enable it for jitted runs.
    guard = 'disallow' if (transfer_guard and jit and not debug_nans) else 'allow'
    jax.config.update('jax_transfer_guard', guard)
    jax.config.update('jax_debug_nans', bool(debug_nans))
    configure_cache(cache_dir(compilation_cache))

    if num_processes > 1 and platform != 'tpu' and not _distributed_initialized():
        if process_id < 0 or not coordinator_address:
            raise ValueError(
                f'Multi-host setup with num_processes={num_processes} needs process_id >= 0 '
                f"(got {process_id}) and a coordinator_address (got '{coordinator_address}')."
            )
        if backends_initialized():
            raise RuntimeError(
                'jax.distributed must start before the JAX backend: call embodied.jax.setup() '
                'before any JAX computation.'
            )
        if platform == 'cpu':
            try:
                jax.config.update('jax_cpu_collectives_implementation', 'gloo')
            except (AttributeError, ValueError):  # pragma: no cover
                pass
        jax.distributed.initialize(coordinator_address, num_processes, process_id)
        print(f'JAX multi-host: process {jax.process_index()} of {jax.process_count()}.')

    nets.COMPUTE_DTYPE = dtype
    if platform:
        check_platform(platform)


def cache_dir(value: str | bool, environ: dict | None = None) -> str:
    """The folder of the persistent compilation cache for a `compilation_cache` value ('': off).

    True (configs of earlier versions) means DEFAULT_CACHE_DIR, False or '' turn the cache off.
    A set JAX_COMPILATION_CACHE_DIR wins over the folder of the value, as JAX itself does.
    """
    environ = os.environ if environ is None else environ
    if value is True:
        value = DEFAULT_CACHE_DIR
    if not value:
        return ''
    folder = environ.get('JAX_COMPILATION_CACHE_DIR') or user_cache_path(str(value), environ)
    return os.path.abspath(os.path.expanduser(folder))


def user_cache_path(path: str, environ: dict | None = None) -> str:
    """`path` with a leading `~/.cache` replaced by XDG_CACHE_HOME when that is set."""
    environ = os.environ if environ is None else environ
    xdg = environ.get('XDG_CACHE_HOME', '')
    # The XDG base directory spec ignores relative values.
    if xdg and os.path.isabs(xdg) and (path == '~/.cache' or path.startswith('~/.cache/')):
        return os.path.join(xdg, path[len('~/.cache/') :])
    return os.path.expanduser(path)


def configure_cache(folder: str) -> None:
    """Use `folder` for JAX's persistent compilation cache ('': no persistent cache)."""
    if folder:
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as e:
            print(
                f'Compiling without the persistent compilation cache: cannot create {folder} '
                f'({e.strerror}). Set --jax.compilation_cache to a writable folder, or to '
                "'' to turn the cache off."
            )
            folder = ''
    jax.config.update('jax_enable_compilation_cache', bool(folder))
    if folder:
        jax.config.update('jax_compilation_cache_dir', folder)
        # A threshold set in the environment is the user's choice and stays.
        if 'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS' not in os.environ:
            jax.config.update('jax_persistent_cache_min_compile_time_secs', CACHE_MIN_COMPILE_SECS)
    # JAX decides once per process whether and where it caches (at the first compilation);
    # a reset makes the settings above apply even after something has been compiled.
    compilation_cache.reset_cache()


def configure(jaxcfg) -> None:
    """`setup()` with the values of a run's `jax` config section."""
    setup(
        platform=jaxcfg.platform,
        compute_dtype=jaxcfg.compute_dtype,
        mock_devices=jaxcfg.mock_devices,
        prealloc=jaxcfg.prealloc,
        jit=jaxcfg.jit,
        debug=jaxcfg.debug,
        transfer_guard=jaxcfg.transfer_guard,
        deterministic=jaxcfg.deterministic,
        gpuflags=jaxcfg.gpuflags,
        tpuflags=jaxcfg.tpuflags,
        xladump=jaxcfg.xladump,
        debug_nans=jaxcfg.debug_nans,
        process_id=jaxcfg.process_id,
        num_processes=jaxcfg.num_processes,
        coordinator_address=jaxcfg.coordinator_address,
        compilation_cache=jaxcfg.compilation_cache,
    )


def check_platform(platform: str) -> None:
    """Start the backend and raise a SetupError that says what to do if it is missing."""
    from embodied.core.base import SetupError

    try:
        devices = jax.devices()
    except (RuntimeError, AssertionError) as e:
        hints = {
            'cuda': "install the CUDA build with pip install -e '.[cuda12]'",
            'gpu': "install the CUDA build with pip install -e '.[cuda12]'",
            'tpu': "install the TPU build with pip install 'jax[tpu]'",
        }
        hint = hints.get(platform, 'check the JAX installation')
        detail = f' ({e})' if str(e) else ''
        raise SetupError(
            f"JAX platform '{platform}' is not available on this machine{detail}. "
            f'Either {hint}, or run on the CPU with --jax.platform cpu.'
        ) from e
    return devices
