"""Datasets in the host's batch format: where they are read from, how they are split and loaded,
the device-resident CIFAR path, and the teacher-logit cache keyed by its views."""
