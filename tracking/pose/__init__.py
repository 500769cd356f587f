"""Head and hand poses from keypoints: stereo matching, the landmark map, head-pose stages, hands."""
