"""An env whose constructor starts processes of its own, as many simulators do.

Each instance starts a multiprocessing child and a plain subprocess and records their process
ids in `$SPAWNING_ENV_PIDS/<pid of the env's process>.txt`; `close()` ends both.
"""

import multiprocessing
import os
import pathlib
import subprocess
import sys
import time

from embodied.envs.dummy import Dummy


class SpawningEnv(Dummy):
    """The dummy env plus two child processes that live as long as the env."""

    def __init__(self):
        super().__init__('spawning', size=(16, 16), length=20)
        self.child = multiprocessing.get_context('spawn').Process(target=time.sleep, args=(300,))
        self.child.start()
        self.popen = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])
        folder = pathlib.Path(os.environ['SPAWNING_ENV_PIDS'])
        (folder / f'{os.getpid()}.txt').write_text(f'{self.child.pid} {self.popen.pid}')

    def close(self):
        """End both child processes."""
        self.child.kill()
        self.child.join()
        self.popen.kill()
        self.popen.wait()
