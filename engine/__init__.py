"""emflow engine: the workflow domain on SpiffWorkflow. Never imports Flask, webapp or a concrete connector."""
