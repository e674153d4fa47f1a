"""Launch the lighthmr detect node (ROS 2 Humble and newer).

    ros2 launch lighthmr_ros detect.launch.py image_topic:=/camera/color/image_raw \
        camera_info_topic:=/camera/color/camera_info device:=cuda

The node is a lifecycle node, started as a launch_ros LifecycleNode. With autostart:=true (the
default) it configures and activates itself; with autostart:=false it waits in `unconfigured` for a
lifecycle manager (nav2_lifecycle_manager with node_names: [lighthmr_detect], or
`ros2 lifecycle set /lighthmr_detect configure` then `activate`). Launch arguments given here
override the same keys of params_file.
"""
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription


def generate_launch_description():
    arguments = [
        DeclareLaunchArgument("image_topic", default_value="/camera/image_raw",
                              description="sensor_msgs/Image topic (its /compressed sibling when compressed:=true)"),
        DeclareLaunchArgument("camera_info_topic", default_value="/camera/camera_info",
                              description="sensor_msgs/CameraInfo topic of the same camera"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="namespace of the node and its output topics"),
        DeclareLaunchArgument("params_file",
                              default_value=PathJoinSubstitution([FindPackageShare("lighthmr_ros"), "config",
                                                                  "detect.yaml"]),
                              description="YAML file with the node's parameters"),
        DeclareLaunchArgument("checkpoint", default_value="",
                              description="model checkpoint (.pt); empty: the default model"),
        DeclareLaunchArgument("device", default_value="auto", description="auto, cpu, cuda or cuda:N"),
        DeclareLaunchArgument("compressed", default_value="false",
                              description="subscribe to <image_topic>/compressed (CompressedImage)"),
        DeclareLaunchArgument("autostart", default_value="true",
                              description="configure and activate at start; false: wait for a lifecycle manager"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="use /clock (true when playing a rosbag with --clock)"),
    ]
    node = LifecycleNode(
        package="lighthmr_ros",
        executable="detect_node",
        name="lighthmr_detect",
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        emulate_tty=True,
        parameters=[
            LaunchConfiguration("params_file"),
            {
                "checkpoint": ParameterValue(LaunchConfiguration("checkpoint"), value_type=str),
                "device": ParameterValue(LaunchConfiguration("device"), value_type=str),
                "compressed": ParameterValue(LaunchConfiguration("compressed"), value_type=bool),
                "autostart": ParameterValue(LaunchConfiguration("autostart"), value_type=bool),
                "use_sim_time": ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool),
            },
        ],
        # One remap: the node derives <image>/compressed from the resolved image topic.
        remappings=[
            ("image", LaunchConfiguration("image_topic")),
            ("camera_info", LaunchConfiguration("camera_info_topic")),
        ],
    )
    return LaunchDescription(arguments + [node])
