"""Face detectors for the deepfake pipeline: MTCNN (accurate on small faces, slow, one frame at a time)
and BlazeFace (fixed shape, batched, fast on CPU and CUDA), behind one ``detect_batch`` interface.
``build_detector`` (ml.face_detection.factory) makes the one a manifest names."""

from ml.face_detection.common import Face, FaceDetector, iou, nms

__all__ = ["Face", "FaceDetector", "iou", "nms"]
