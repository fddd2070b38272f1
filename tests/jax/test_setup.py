"""embodied.jax.setup: XLA flags, process configuration, and conflicts with a running backend.

Everything that changes process-wide JAX state runs in a fresh subprocess.
"""

import importlib
import os
import subprocess
import sys
import textwrap

import pytest

# `embodied.jax.setup` is the function (re-exported); the module lives in sys.modules.
jsetup = importlib.import_module('embodied.jax.setup')


def run_python(code):
    env = {k: v for k, v in os.environ.items() if k not in ('XLA_FLAGS', 'JAX_PLATFORMS')}
    proc = subprocess.run(
        [sys.executable, '-c', textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_gpu_flags_apply_for_cuda_and_gpu():
    for platform in ('cuda', 'gpu'):
        flags = jsetup.xla_flags(platform)
        assert flags[:2] == ['--xla_gpu_autotune_level=1', '--xla_gpu_deterministic_ops=true']
        assert '--xla_gpu_enable_latency_hiding_scheduler=true' in flags
        assert '--xla_gpu_all_reduce_combine_threshold_bytes=134217728' in flags
        assert '--xla_gpu_reduce_scatter_combine_threshold_bytes=67108864' in flags
        assert '--xla_gpu_enable_triton_gemm=false' in flags
        assert len(flags) == 2 + 15
    # Auto (None) may pick a GPU; CPU and TPU runs get no GPU flags.
    assert jsetup.xla_flags(None)[:2] == flags[:2]
    assert jsetup.xla_flags('cpu') == [] and jsetup.xla_flags('tpu') == []
    assert jsetup.xla_flags('cuda', gpuflags=False, deterministic=False, autotune=4) == [
        '--xla_gpu_autotune_level=4'
    ]


def test_debug_on_cpu_compiles_with_the_older_fusion_emitters_where_jaxlib_has_them():
    flag = '--xla_cpu_use_fusion_emitters=false'
    has = jsetup.jaxlib_version() >= (0, 6)
    assert (flag in jsetup.xla_flags('cpu', debug=True)) == has
    assert flag not in jsetup.xla_flags('cpu') + jsetup.xla_flags('cuda', debug=True)
    assert (flag in jsetup.target_env('cpu', debug=True)['XLA_FLAGS'].split()) == has


def test_tpu_mock_and_dump_flags():
    tpu = jsetup.xla_flags('tpu', tpuflags=True)
    assert '--xla_tpu_enable_async_collective_fusion=true' in tpu and len(tpu) == 10
    flags = jsetup.xla_flags('cpu', mock_devices=8, xladump='/tmp/dump')
    assert '--xla_force_host_platform_device_count=8' in flags
    assert '--xla_dump_to=/tmp/dump' in flags and '--xla_dump_hlo_as_long_text' in flags


def test_merge_keeps_unrelated_user_flags():
    merged = jsetup.merge_flags(
        '--xla_cpu_foo=1 --xla_gpu_autotune_level=3', ['--xla_gpu_autotune_level=1']
    )
    assert merged == '--xla_cpu_foo=1 --xla_gpu_autotune_level=1'


@pytest.mark.pinned
def test_unknown_flags_are_dropped_with_replacement():
    flags = jsetup.supported_flags(
        ['--xla_gpu_autotune_level=1', '--xla_made_up_flag=1', '--xla_gpu_graph_level=0']
    )
    assert '--xla_gpu_autotune_level=1' in flags and '--xla_made_up_flag=1' not in flags
    # graph_level exists only in older XLA; newer XLA gets the command-buffer switch instead.
    assert ('--xla_gpu_graph_level=0' in flags) != ('--xla_gpu_enable_command_buffer=' in flags)


@pytest.mark.pinned
def test_setup_configures_a_fresh_process():
    out = run_python("""
        import os
        import numpy as np
        import jax, jax.numpy as jnp
        import embodied.jax as ej
        ej.setup(platform='cpu', compute_dtype='float32', mock_devices=2, prealloc=False,
                 jit=False)
        assert ej.nets.COMPUTE_DTYPE == jnp.float32
        flags = os.environ['XLA_FLAGS'].split()
        assert '--xla_force_host_platform_device_count=2' in flags, flags
        assert '--xla_gpu_enable_triton_gemm=false' not in flags, flags
        assert os.environ['XLA_PYTHON_CLIENT_PREALLOCATE'] == 'false'
        assert os.environ['TF_CUDNN_DETERMINISTIC'] == '1'
        assert jax.device_count() == 2, jax.devices()
        # jit=False: no transfer guard, so eager ops on host arrays work (reference issue 176).
        assert jax.config.jax_disable_jit
        print(float(jnp.sum(np.ones(3))))
        ej.setup(platform='cpu', compute_dtype='bfloat16', mock_devices=2, jit=True)
        assert jax.config.jax_transfer_guard == 'disallow'
        assert not jax.config.jax_disable_jit
        assert ej.nets.COMPUTE_DTYPE == jnp.bfloat16
        ej.setup(platform='cpu', jit=True, debug_nans=True)
        assert jax.config.jax_transfer_guard == 'allow'
        print('ok')
    """)
    assert out.split() == ['3.0', 'ok']


@pytest.mark.pinned
def test_setup_after_backend_start_rejects_conflicting_settings():
    out = run_python("""
        import jax, jax.numpy as jnp
        import embodied.jax as ej
        jnp.ones(1).block_until_ready()
        assert ej.setup.__module__ == 'embodied.jax.setup'
        from embodied.jax.setup import backends_initialized
        assert backends_initialized()
        for kwargs, message in [
                (dict(platform='cpu', mock_devices=4), 'mock_devices=4'),
                (dict(platform='cuda'), "asks for 'cuda'")]:
            try:
                ej.setup(**kwargs)
            except RuntimeError as e:
                assert message in str(e) and 'fresh process' in str(e), e
            else:
                raise AssertionError(kwargs)
        ej.setup(platform='cpu', compute_dtype='float16')
        assert ej.nets.COMPUTE_DTYPE == jnp.float16
        try:
            ej.setup(platform='cpu', compute_dtype='int8')
        except ValueError as e:
            assert 'int8' in str(e)
        try:
            ej.setup(platform='cpu', num_processes=2)
        except ValueError as e:
            assert 'process_id' in str(e)
        print('ok')
    """)
    assert out.splitlines()[-1] == 'ok'


@pytest.mark.pinned
def test_backend_state_detection_in_this_process():
    # The helper must work on the installed JAX version without starting a backend itself.
    assert jsetup.backends_initialized() in (True, False)


@pytest.mark.pinned
def test_repeated_setup_on_a_running_gpu_backend(monkeypatch):
    # Simulate a running GPU backend: the same settings again are fine, others are refused.
    monkeypatch.delenv('XLA_FLAGS', raising=False)
    env = jsetup.target_env('cuda', prealloc=True)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(jsetup.jax, 'default_backend', lambda: 'gpu')
    assert jsetup.target_env('cuda', prealloc=True) == env
    jsetup._check_running_backend('cuda', 0, jsetup.target_env('cuda', prealloc=True))
    jsetup._check_running_backend('gpu', 0, env)
    with pytest.raises(RuntimeError, match='XLA_PYTHON_CLIENT_PREALLOCATE'):
        jsetup._check_running_backend('cuda', 0, jsetup.target_env('cuda', prealloc=False))
    with pytest.raises(RuntimeError, match='XLA_FLAGS'):
        jsetup._check_running_backend('cuda', 0, jsetup.target_env('cuda', deterministic=False))
    with pytest.raises(RuntimeError, match="asks for 'cpu'"):
        jsetup._check_running_backend('cpu', 0, env)
