"""Episode videos written as mp4 files through PyAV (no ffmpeg binary needed)."""

import collections

import elements
import numpy as np


def image_keys(tran):
    """Keys of a transition that hold an image: uint8 arrays of shape (H, W, 1 or 3)."""
    keys = []
    for key, value in tran.items():
        value = np.asarray(value)
        if value.dtype == np.uint8 and value.ndim == 3 and value.shape[-1] in (1, 3):
            keys.append(key)
    return keys


def write_mp4(path, frames, fps):
    """Encode frames (T, H, W, C) uint8 with C in {1, 3} as an H.264 mp4 file."""
    import av

    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] not in (1, 3):
        raise ValueError(
            f'Video frames must be uint8 of shape (T, H, W, 1 or 3), got {frames.dtype} '
            f'{frames.shape}.'
        )
    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, -1)
    # The yuv420p pixel format needs even sizes, so pad odd sizes by one row or column.
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode='edge')
    path = elements.Path(path)
    path.parent.mkdir()
    with av.open(str(path), mode='w') as container:
        stream = container.add_stream('libx264', rate=int(fps))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = 'yuv420p'
        for frame in frames:
            packet = stream.encode(av.VideoFrame.from_ndarray(frame, format='rgb24'))
            container.mux(packet)
        container.mux(stream.encode())
    return path


class EpisodeVideos:
    """Driver callback that saves the first `count` finished episodes of each env as mp4.

    Each image observation key gets its own file `<directory>/env<i>_ep<n>_<key>.mp4`, where
    `/` in a key becomes `_`. Frames are buffered only for episodes that will be written.
    """

    def __init__(self, directory, fps, count=1):
        self.directory = elements.Path(directory)
        self.fps = fps
        self.count = count
        self.frames = {}
        self.written = collections.defaultdict(int)
        self.paths = []

    def __call__(self, tran, worker):
        """Add one transition of `worker`; writes the video when its episode ends."""
        if self.written[worker] >= self.count:
            return
        if tran['is_first']:
            self.frames[worker] = collections.defaultdict(list)
        if worker not in self.frames:
            return  # Joined mid-episode; wait for the next episode start.
        for key in image_keys(tran):
            self.frames[worker][key].append(np.asarray(tran[key]))
        if tran['is_last']:
            frames = self.frames.pop(worker)
            index = self.written[worker]
            self.written[worker] += 1
            for key, images in frames.items():
                name = f'env{worker}_ep{index}_{key.replace("/", "_")}.mp4'
                self.paths.append(write_mp4(self.directory / name, np.stack(images), self.fps))
                print(f'Wrote episode video: {self.paths[-1]}')
