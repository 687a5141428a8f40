"""3-D from depth: where the segmented object is in space, in a form a grasp planner can use.

Owns the camera model (`camera`: validated intrinsics from CameraInfo, depth range, back-projection),
the masked point cloud and its cleaning (`pointcloud`), the oriented box and robust centroid (`box`),
rigid transforms (`transforms`) and the one call the node makes (`target.target_3d`). Plain numpy: it
may import only the root helpers (`..errors`), never torch, the models, the method or ROS.
See docs/3d.md.
"""
