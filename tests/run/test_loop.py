"""The shared run loop: hooks, one log call, the final save and a stop request."""

import helpers

from embodied.run import loop as looplib
from embodied.run import outputs


class Checkpoint:
    def __init__(self):
        self.saves = 0

    def save(self):
        self.saves += 1


def make_loop(tmp_path, total, **kwargs):
    config = helpers.config('--run.log_every', '1', '--run.save_every', '1', logdir=tmp_path)
    logger = outputs.make_logger(config)
    return looplib.Loop(None, logger, config, total, **kwargs), logger


def test_hooks_run_on_their_clocks_and_the_end_saves(tmp_path, always_clock):
    loop, logger = make_loop(tmp_path, 5)
    calls = []
    loop.on_report(lambda: calls.append('report'))
    loop.on_log(lambda: logger.add({'value': 1.0}))
    loop.on_close(lambda: calls.append('close'))
    checkpoint = Checkpoint()

    def body():
        calls.append('body')
        loop.step.increment()

    assert loop.run(body, checkpoint) is False
    loop.close()
    assert calls == ['report', 'body'] * 5 + ['close']
    # A save on every clock tick (always_clock) plus the final one.
    assert checkpoint.saves == 5 + 1
    # One log per clock tick plus the final one, each with the hooks' metrics and the usage.
    records = (tmp_path / 'metrics.jsonl').read_text().splitlines()
    assert len(records) == 5 + 1 and all('"value"' in r for r in records)
    assert all('"usage/' in r for r in records)


def test_a_stop_request_ends_the_loop_after_the_current_body_call(tmp_path, capsys):
    loop, _ = make_loop(tmp_path, 1000)

    def body():
        loop.step.increment()
        if int(loop.step) == 3:
            loop.stop.request()

    checkpoint = Checkpoint()
    assert loop.run(body, checkpoint) is True
    loop.close()
    assert int(loop.step) == 3 and checkpoint.saves == 1
    assert loop.stopped_line() == (
        f'Stopped by SIGINT at step 3 and saved a checkpoint in {tmp_path / "ckpt"}.'
    )
    assert 'Received SIGINT' in capsys.readouterr().out


def test_report_first_reports_before_the_first_body_call(tmp_path):
    loop, _ = make_loop(tmp_path, 1, report_first=True)
    calls = []
    loop.on_report(lambda: calls.append('report'))
    loop.run(lambda: (calls.append('body'), loop.step.increment()))
    loop.close()
    assert calls == ['report', 'body']
