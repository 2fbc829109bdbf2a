"""ROS-free core, one package per domain: frames, faces, emotion, hue (+ hue.bridge), hri, viewer, dataset.

The modules here (param_spec, log_text, cpu_threads, stamp_pairing) serve every package and import none of them;
nothing in core imports rclpy or anything above it (nodes/, live, training): test/tooling/test_layout.py checks.
"""
