"""Imported once in the worker forkserver, so every forked run starts with the heavy imports done."""

from effbench.run.forkserver import follow_the_sweep

follow_the_sweep()  # first, so a sweep killed while the server still imports torch leaves nothing behind

import codecarbon  # noqa: E402, F401
import datasets  # noqa: E402, F401
import lm_eval.evaluator  # noqa: E402
import lm_eval.models.huggingface  # noqa: E402
import lm_eval.tasks  # noqa: E402, F401
import torch  # noqa: E402, F401
import transformers  # noqa: E402
import transformers.models.llama.modeling_llama  # noqa: E402, F401

from effbench.measure.accuracy import task_manager  # noqa: E402
from effbench.plugins import registry  # noqa: E402
from effbench.run import pipeline  # noqa: E402, F401

task_manager(tuple(str(d) for d in registry().task_dirs))
