"""The device-agnostic training engine (used without mdistiller, or without CUDA)."""
