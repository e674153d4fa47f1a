"""Offline rosbag processing: a recorded bag in, the same bag plus human meshes out.

    from lighthmr_ros.bag import process_bag
    summary = process_bag("run1", "run1_humans", image_topic="/cam/image")

Reads what the `rosbags` library reads (rosbag2 sqlite3 and mcap, ROS 1 bags), writes rosbag2.
"""
from lighthmr_ros.bag.process import BagSummary, output_topics, process_bag

__all__ = ["BagSummary", "output_topics", "process_bag"]
