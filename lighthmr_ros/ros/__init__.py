"""ROS 2 side of lighthmr_ros: image conversion, message building, markers, tracking and the node.

Every module here imports rclpy message types; the rest of the package does not need ROS.
"""
