"""A plugin's ``train`` is a function even after its module of the same name was imported
(the pipeline and online learners import ``flink_dl.pytorch.train`` the module; a script
that fitted one and then called ``flink_dl.pytorch.train(...)`` got a module)."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import importlib
import flink_dl.pytorch.train
import flink_dl.tensorflow.train
from flink_dl.pytorch import train as torch_train
from flink_dl.tensorflow import train as tf_train
import flink_dl.pytorch
print(callable(torch_train), torch_train.__module__, callable(tf_train), tf_train.__module__,
      flink_dl.pytorch.train is torch_train,
      importlib.import_module("flink_dl.pytorch.train").__name__)
"""


def test_train_stays_the_function_after_its_module_is_imported() -> None:
    # a fresh interpreter: the order of imports is the point
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          timeout=300, check=True)
    assert done.stdout.split() == ["True", "flink_dl.pytorch.train", "True",
                                   "flink_dl.tensorflow.train", "True", "flink_dl.pytorch.train"]
