"""The contract both framework plugins share: one training config base
(``TrainingConfig``), one context base (``TrainingContext``), one entry wrapper, one way to
build the job, checkpoints and warm starts. ``flink_dl.pytorch`` and
``flink_dl.tensorflow`` add only what their framework needs on top.
"""
