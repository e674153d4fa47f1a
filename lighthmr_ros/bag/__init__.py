"""Offline rosbag processing: a recorded bag in, the same bag plus human meshes out.

    from lighthmr_ros.bag import OutputOptions, process_bag
    from lighthmr_ros.ros.pipeline import PipelineOptions
    summary = process_bag("run1", "run1_humans", "/cam/image", writing=OutputOptions(storage="mcap"),
                          options=PipelineOptions(det_threshold=0.4))

Reads what the `rosbags` library reads (rosbag2 sqlite3 and mcap, ROS 1 bags), writes rosbag2.
"""
from lighthmr_ros.bag.process import (
    BagSummary,
    InputOptions,
    ModelOptions,
    OutputOptions,
    output_topics,
    process_bag,
)

__all__ = ["BagSummary", "InputOptions", "ModelOptions", "OutputOptions", "output_topics", "process_bag"]
