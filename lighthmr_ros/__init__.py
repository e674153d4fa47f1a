"""lighthmr_ros: real-time multi-person 3D human mesh recovery for ROS 2.

The generated messages (``lighthmr_ros.msg``) may be installed in a different directory than
these hand-written modules (a venv built from source, an overlay workspace): extend the
package path so both halves import as one package.
"""
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)

__version__ = "0.1.0"

from lighthmr_ros.errors import LightHMRError  # noqa: E402
from lighthmr_ros.human import Human  # noqa: E402

__all__ = ["Human", "LightHMRError", "__version__"]
