"""Sharding plumbing for the JAX agent: meshes, host/device moves, jitted pure functions.

Everything here works in one process and in multi-process (multi-host) runs. In a multi-host
run each process holds only its local part of a batch ("process-local data"); the functions
here assemble global arrays from those parts and hand back process-local views of results.
"""

import inspect
import math
import re
import threading

import jax
import jax.numpy as jnp
import ninjax as nj
import numpy as np

P = jax.sharding.PartitionSpec
DATA_AXES = ('d', 'f')
MESH_AXES = ('d', 'f', 't')
# ninjax keeps its module name scope in one process-wide variable, so two threads must not
# trace model code at the same time (e.g. the first policy and train calls in parallel mode).
TRACE_LOCK = threading.RLock()

try:
    _shard_map = jax.shard_map
except AttributeError:  # jax < 0.6 keeps it under experimental.
    from jax.experimental.shard_map import shard_map as _shard_map


def shard_map(fn, mesh, in_specs, out_specs):
    """shard_map without replication checks, across the jax versions we support."""
    params = inspect.signature(_shard_map).parameters
    check = {'check_vma': False} if 'check_vma' in params else {'check_rep': False}
    return _shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs, **check)


def is_multihost():
    """Whether this JAX runtime spans more than one process."""
    return jax.process_count() > 1


def make_mesh(devices, shape, names=MESH_AXES):
    """Arrange devices into a mesh; `shape` is 'a,b,c' or a sequence with at most one -1."""
    if isinstance(shape, str):
        shape = [int(x) for x in shape.split(',')]
    shape = [int(x) for x in shape]
    if len(shape) != len(names) or sum(x == -1 for x in shape) > 1:
        raise ValueError(
            f'Mesh shape {shape} must have {len(names)} entries for axes {names} with at '
            'most one -1.'
        )
    known = math.prod(x for x in shape if x != -1)
    count = len(devices)
    if known <= 0 or count % known:
        raise ValueError(f'Mesh shape {shape} does not divide the {count} selected devices.')
    shape = [count // known if x == -1 else x for x in shape]
    if math.prod(shape) != count:
        raise ValueError(
            f'Mesh shape {shape} holds {math.prod(shape)} devices but {count} were selected.'
        )
    return jax.sharding.Mesh(np.array(devices, dtype=object).reshape(shape), tuple(names))


def local_sharding(sharding):
    """The same partitioning restricted to this process's devices (tree of shardings ok)."""
    return jax.tree.map(lambda s: jax.sharding.NamedSharding(s.mesh.local_mesh, s.spec), sharding)


def _spread(sharding, tree):
    """A sharding per leaf of `tree`, from one sharding or a matching tree of shardings."""
    if isinstance(sharding, jax.sharding.Sharding):
        return jax.tree.map(lambda _: sharding, tree)
    return sharding


def device_put(tree, sharding):
    """Host data (process-local in multi-host runs) to global device arrays."""
    if not is_multihost():
        return jax.device_put(tree, sharding)
    shardings = _spread(sharding, tree)
    with jax.transfer_guard_host_to_device('allow'):
        return jax.tree.map(
            lambda x, s: jax.make_array_from_process_local_data(s, np.asarray(x)), tree, shardings
        )


def _local_shape(shape, spec, mesh_shape, local_shape):
    """Shape of the part of an array that one process holds (or the inverse mapping)."""
    spec = list(spec) + [None] * (len(shape) - len(spec))
    result = []
    for dim, axes in zip(shape, spec):
        if axes is None:
            result.append(dim)
            continue
        axes = axes if isinstance(axes, tuple) else (axes,)
        total = math.prod(mesh_shape[a] for a in axes)
        local = math.prod(local_shape[a] for a in axes)
        result.append(dim // total * local)
    return tuple(result)


def to_local(tree):
    """Global arrays to arrays over this process's devices only (no data movement)."""
    if not is_multihost():
        return tree

    def fn(x):
        sharding = x.sharding
        mesh = sharding.mesh
        shape = _local_shape(x.shape, sharding.spec, mesh.shape, mesh.local_mesh.shape)
        target = jax.sharding.NamedSharding(mesh.local_mesh, sharding.spec)
        return jax.make_array_from_single_device_arrays(
            shape, target, [s.data for s in x.addressable_shards]
        )

    return jax.tree.map(fn, tree)


def to_global(tree, sharding):
    """Process-local arrays to global arrays with `sharding` (no data movement)."""
    if not is_multihost():
        return tree

    def fn(x, target):
        local = x.sharding.mesh.shape
        shape = _local_shape(x.shape, target.spec, local, target.mesh.shape)
        return jax.make_array_from_single_device_arrays(
            shape, target, [s.data for s in x.addressable_shards]
        )

    return jax.tree.map(fn, tree, _spread(sharding, tree))


def move(tree, sharding):
    """Copy device arrays to other devices or another partitioning."""
    if not is_multihost():
        return jax.device_put(tree, sharding)
    tree = to_local(tree)
    tree = jax.device_put(tree, local_sharding(_spread(sharding, tree)))
    return to_global(tree, sharding)


def fetch_async(tree):
    """Start copying results to the host; returns the process-local arrays to fetch later."""
    tree = to_local(tree)
    with jax.transfer_guard_device_to_host('allow'):
        for x in jax.tree.leaves(tree):
            x.copy_to_host_async()
    return tree


def fetch(tree):
    """Device results to host NumPy, with bfloat16 and float16 widened to float32."""
    tree = jax.device_get(to_local(tree))

    def widen(x):
        x = np.asarray(x)
        if x.dtype in (jnp.bfloat16, np.float16):
            x = x.astype(np.float32)
        return x

    return jax.tree.map(widen, tree)


def resolve_rules(shapes, rules, mesh):
    """NamedSharding per parameter from (regex, PartitionSpec) rules; replicated by default."""
    rules = list(rules) or [('.*', P())]
    shardings = {}
    for key in shapes:
        for pattern, spec in rules:
            if re.search(pattern, key):
                shardings[key] = jax.sharding.NamedSharding(mesh, spec)
                break
        else:
            raise ValueError(
                f'No partition rule matches parameter {key!r}; add a catch-all rule '
                "('.*', PartitionSpec()) to the model's partition_rules."
            )
    return shardings


def init(method, mesh, params, params_sharding, seed, args, arg_shardings, rules=()):
    """Create the missing state entries of a ninjax method by tracing it once.

    Returns the full state (existing plus created entries) placed per the partition rules,
    and the shardings of that state.
    """
    return creator(method, mesh, params_sharding, arg_shardings, rules)(params, seed, *args)


def creator(method, mesh, params_sharding, arg_shardings, rules=()):
    """`create(params, seed, *args) -> (state, shardings)`: `init` as a function that traces the
    method on its first call only, so that later calls create the state for other seeds (a
    ninjax model cannot be traced for creation twice)."""
    pure = nj.pure(method)

    def fn(params, seed, *args):
        with TRACE_LOCK:
            state, _ = pure(params, *args, seed=seed, create=True, modify=True, ignore=True)
        return state

    rules = list(rules)
    mirrored = jax.sharding.NamedSharding(mesh, P())
    jitted = None

    def create(params, seed, *args):
        nonlocal jitted
        if jitted is None:
            if len({spec for _, spec in rules}) <= 1:
                # One placement for every entry needs no keys ahead of time, so the model is
                # traced only once (ninjax Trees cache their structure on the first trace).
                out = jax.sharding.NamedSharding(mesh, rules[0][1] if rules else P())
            else:
                out = resolve_rules(jax.eval_shape(fn, params, seed, *args), rules, mesh)
            jitted = jax.jit(
                fn, in_shardings=(params_sharding, mirrored, *arg_shardings), out_shardings=out
            )
        state = jitted(params, seed, *args)
        shardings = resolve_rules(state, rules, mesh)
        # A no-op after jit; places the arrays when jit is disabled (debugging).
        return jax.device_put(state, shardings), shardings

    return create


def apply(
    method,
    mesh,
    in_shardings,
    out_shardings,
    *,
    split_params=False,
    return_state=False,
    single_output=False,
    static_argnums=(),
    donate_argnums=(),
    use_shardmap=False,
):
    """Jit a ninjax method as `fn(params, seed, *args) -> outputs` with shardings.

    With `split_params`, the first two arguments are two dicts of parameters (e.g. donated and
    kept) that are merged. With `return_state`, the new state is returned first. `in_shardings`
    covers the non-static arguments. With `use_shardmap`, the body runs per device under
    shard_map and every device draws different random numbers.
    """
    pure = nj.pure(method)
    static_argnums = tuple(static_argnums)
    shardmapped = use_shardmap and mesh.size > 1

    def body(*args):
        if split_params:
            first, second, seed, *rest = args
            params = {**first, **second}
        else:
            params, seed, *rest = args
        if shardmapped:
            seed = jax.random.fold_in(seed, jax.lax.axis_index(DATA_AXES[0]))
        with TRACE_LOCK:
            state, outs = pure(params, *rest, seed=seed)
        outs = (outs,) if single_output else tuple(outs)
        return (state, *outs) if return_state else outs

    def specs(shardings):
        return jax.tree.map(lambda s: s.spec, shardings)

    def fn(*args):
        dynamic = [x for i, x in enumerate(args) if i not in static_argnums]

        def inner(*dynamic):
            it = iter(dynamic)
            full = [args[i] if i in static_argnums else next(it) for i in range(len(args))]
            return body(*full)

        if shardmapped:
            inner = shard_map(inner, mesh, tuple(specs(in_shardings)), specs(out_shardings))
        outs = inner(*dynamic)
        return outs[0] if single_output else outs

    if single_output:
        assert len(out_shardings) == 1, out_shardings
        out_shardings = out_shardings[0]
    return jax.jit(
        fn,
        in_shardings=tuple(in_shardings),
        out_shardings=out_shardings,
        static_argnums=static_argnums,
        donate_argnums=tuple(donate_argnums),
    )


def checkpoint_groups(params, chunksize):
    """Split parameters into groups of at most `chunksize` bytes (<= 0: one group).

    Returns (keys, gather, shard) per group: `gather` replicates a group (so every process can
    read it), `shard` restores the original partitioning from replicated arrays. Both are
    compiled ahead of time when jit is enabled.
    """
    keys = list(params.keys())
    if chunksize <= 0:
        groups = [keys]
    else:
        groups, current, size = [], [], 0
        for key in keys:
            nbytes = params[key].nbytes
            if current and size + nbytes > chunksize:
                groups.append(current)
                current, size = [], 0
            current.append(key)
            size += nbytes
        if current:
            groups.append(current)
    result = []
    for group in groups:
        original = {k: params[k].sharding for k in group}
        mesh = original[group[0]].mesh
        mirrored = jax.sharding.NamedSharding(mesh, P())
        gather = jax.jit(lambda x: x, in_shardings=(original,), out_shardings=mirrored)
        shard = jax.jit(lambda x: x, in_shardings=(mirrored,), out_shardings=original)
        if not jax.config.jax_disable_jit:
            struct = lambda k, s: jax.ShapeDtypeStruct(params[k].shape, params[k].dtype, sharding=s)
            gather = gather.lower({k: struct(k, original[k]) for k in group}).compile()
            shard = shard.lower({k: struct(k, mirrored) for k in group}).compile()
        result.append((group, gather, shard))
    return result


def cost_summary(compiled):
    """FLOPs and memory of a compiled function as text lines (what this backend reports)."""
    lines = []
    try:
        cost = compiled.cost_analysis()
    except Exception:  # Not every backend implements it.
        cost = None
    if isinstance(cost, (list, tuple)):  # jax < 0.4.36 returns one dict per device program.
        cost = cost[0] if cost else None
    if cost and 'flops' in cost:
        lines.append(f'{"FLOPs:":<18}{cost["flops"]:.2e}')
    try:
        memory = compiled.memory_analysis()
    except Exception:
        memory = None
    if memory is not None:
        for name, attr in [
            ('temp', 'temp_size_in_bytes'),
            ('inputs', 'argument_size_in_bytes'),
            ('outputs', 'output_size_in_bytes'),
            ('code', 'generated_code_size_in_bytes'),
        ]:
            if hasattr(memory, attr):
                label = f'Memory ({name}):'
                lines.append(f'{label:<18}{getattr(memory, attr):.2e} B')
    return lines or ['Cost analysis not available on this backend.']
