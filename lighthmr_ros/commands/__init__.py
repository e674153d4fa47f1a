"""Sub-commands of the ``lighthmr`` command line (see lighthmr_ros.cli)."""
