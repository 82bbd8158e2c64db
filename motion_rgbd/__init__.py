"""motion_rgbd: see motion_rgbd/README.md."""
