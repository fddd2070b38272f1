"""Small pieces shared by the roles of the parallel script."""

import collections
import time

import elements
import numpy as np

# Seconds between checks of a stop signal while waiting for a reply.
POLL = 0.5
# Seconds a role waits at the end for its peers to disconnect or to learn that the run ended.
SHUTDOWN_WAIT = 10
# Seconds the agent role waits for the replay and logger roles to confirm their final save.
STOP_TIMEOUT = 120


def timer_summary() -> str:
    """The section timer's text summary ('' when the timer is disabled)."""
    return elements.timer.stats().get('summary', '')


def prefixed(metrics: dict, prefix: str) -> dict:
    """`{prefix/key: value}`."""
    return {f'{prefix}/{k}': v for k, v in metrics.items()}


def contiguous(tree):
    """A nest of C-contiguous numpy arrays (portal refuses other arrays)."""
    if isinstance(tree, dict):
        return {k: contiguous(v) for k, v in tree.items()}
    return np.asarray(tree, order='C')


def contiguous_metrics(metrics: dict) -> dict:
    """Metrics ready to send: strings unchanged, everything else as contiguous arrays."""
    return {k: v if isinstance(v, str) else contiguous(v) for k, v in metrics.items()}


def wait_for_clients(server, timeout: float) -> None:
    """Wait until no client is connected to `server`, or `timeout` seconds have passed."""
    start = time.monotonic()
    while server.connections and time.monotonic() - start < timeout:
        time.sleep(0.05)


class RemoteStream:
    """Iterator over the replies of a replay server method, keeping requests in flight.

    Ends (StopIteration) when `stop` is set or the server replies with an empty batch, which is
    how the replay role answers once the run is stopping.
    """

    def __init__(self, client, method, stop, inflight=3, poll=POLL):
        self.client = client
        self.method = method
        self.stop = stop
        self.inflight = inflight
        self.poll = poll
        self.futures = collections.deque()
        self.received = False
        self._fill()

    def __iter__(self):
        return self

    def __next__(self):
        self._fill()
        future = self.futures[0]
        while True:
            if self.stop.is_set():
                raise StopIteration
            try:
                data = future.result(timeout=self.poll)
                break
            except TimeoutError:
                continue
        self.futures.popleft()
        if not data:
            raise StopIteration
        self.received = True
        return data

    def ready(self) -> bool:
        """Whether a batch has arrived (so the next item will not wait for a first sample)."""
        return self.received or bool(self.futures and self.futures[0].done())

    def _fill(self):
        while len(self.futures) < self.inflight:
            self.futures.append(self.client.call(self.method))
