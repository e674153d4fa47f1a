"""One exception type per user-facing failure; each message is a sentence a user can act on.

The command line prints ``str(error)`` of any LightHMRError instead of a traceback.
"""


class LightHMRError(Exception):
    """Base class of every error this package raises on purpose."""


class CheckpointError(LightHMRError):
    """A checkpoint file is missing, truncated, of the wrong kind, or does not fit the model."""


class BodyModelError(LightHMRError):
    """A body model cannot be built (missing licensed files, wrong folder, bad file)."""


class ConfigError(LightHMRError):
    """A model, training or node configuration is invalid."""


class ImageError(LightHMRError):
    """An image (array, ROS message, upload) cannot be decoded or is not usable."""


class BagError(LightHMRError):
    """A rosbag cannot be read or written as asked."""


class DatasetError(LightHMRError):
    """A data set folder or annotation file is missing or malformed."""


class DownloadError(LightHMRError):
    """A checkpoint download is refused, cannot reach its server, breaks off or fails its check."""
