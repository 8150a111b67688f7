"""bpnet: bottom-up multi-person 2D pose estimation (a TLT/TAO BodyPoseNet workflow on TF2/Keras 3)."""

__version__ = "0.2.0"
