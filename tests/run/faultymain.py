"""The `python -m dreamerv3.main` command line with an injected write failure, for tests.

    python faultymain.py <fault> <save> <flags...>

`fault` is `chunk` (replay chunk writes raise EIO) or `enospc` (chunk and checkpoint file
writes raise ENOSPC); it applies during the `save`-th checkpoint save of the run (1 is the
initial one) and after it.
"""

import errno
import sys


def install(fault, save):
    """Patch the writers so that they fail from the `save`-th checkpoint save on."""
    from embodied.core import chunks
    from embodied.run import checkpoints

    saves = [0]
    original_save = checkpoints.Checkpoint.save

    def counting_save(self):
        saves[0] += 1
        return original_save(self)

    def failing(original, error):
        def write(*args, **kwargs):
            if saves[0] >= save:
                raise OSError(error, f'{errno.errorcode[error]} injected by the test')
            return original(*args, **kwargs)

        return write

    checkpoints.Checkpoint.save = counting_save
    if fault == 'chunk':
        chunks.Chunk.save = failing(chunks.Chunk.save, errno.EIO)
    elif fault == 'enospc':
        chunks.Chunk.save = failing(chunks.Chunk.save, errno.ENOSPC)
        checkpoints._write_file = failing(checkpoints._write_file, errno.ENOSPC)
    else:
        raise ValueError(f'Unknown fault {fault!r}.')


if __name__ == '__main__':
    install(sys.argv[1], int(sys.argv[2]))
    from dreamerv3 import main

    main.main(sys.argv[3:])
