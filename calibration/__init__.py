"""calibration: boards, recording sessions, solving intrinsics and extrinsics, reports and file formats."""
