"""ros2_iterprime: zero-shot referring-expression segmentation (IteRPrimE) for ROS 2.

One setup.py serves both routes:
- pip (`pip install -e .`): the core library, the CLI `ros2_iterprime` and the node `iterprime_node`;
- colcon on a real ROS 2 install (ament_python): the same, plus launch/, config/ and rviz/ under
  share/ros2_iterprime and the executable under lib/ros2_iterprime (see setup.cfg).
"""
from glob import glob

from setuptools import find_packages, setup

package_name = "ros2_iterprime"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(include=[package_name, f"{package_name}.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{package_name}"]),
        (f"share/{package_name}", ["package.xml"]),
        (f"share/{package_name}/launch", glob("launch/*.py")),
        (f"share/{package_name}/config", glob("config/*")),
        (f"share/{package_name}/rviz", glob("rviz/*.rviz")),
    ],
    python_requires=">=3.10",
    # Ranges, not pins: scripts/setup.sh installs the tested pins from requirements.txt.
    # rclpy and the message packages are NOT listed: on a real ROS 2 install they come from the
    # distribution (package.xml), in a venv from the ros-kilted-* wheels (requirements.txt).
    install_requires=[
        "torch>=2.2",
        "transformers>=5.0,<6",
        "huggingface_hub",
        "safetensors",
        "spacy>=3.7,<4",
        "numpy>=1.26",
        "pillow>=10",
        "simplejpeg>=1.7",  # JPEG decoding of compressed camera streams (PIL is the fallback)
        "scipy>=1.11",
        "pycocotools>=2.0.7",
        "tqdm>=4.66",
        "psutil>=5.9",
        "rosbags>=0.11,<0.12",  # `ros2_iterprime bag` (rosbag2 replay without a ROS install)
    ],
    zip_safe=True,
    maintainer="ros2_iterprime maintainers",
    maintainer_email="maintainers@ros2-iterprime.invalid",
    description="Zero-shot referring image segmentation (IteRPrimE: BLIP Grad-CAM + SAM) as a ROS 2 node",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "ros2_iterprime = ros2_iterprime.cli.main:main",
            "iterprime_node = ros2_iterprime.ros.entry:main",
        ],
    },
)
