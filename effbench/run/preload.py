"""Imported once in the worker forkserver, so every forked run starts with the heavy imports done."""

import codecarbon  # noqa: F401
import datasets  # noqa: F401
import lm_eval.evaluator
import lm_eval.models.huggingface
import lm_eval.tasks  # noqa: F401
import torch  # noqa: F401
import transformers
import transformers.models.llama.modeling_llama  # noqa: F401

from effbench.measure.accuracy import task_manager
from effbench.plugins import registry
from effbench.run import pipeline  # noqa: F401
from effbench.run.forkserver import exit_with_the_sweep

task_manager(tuple(str(d) for d in registry().task_dirs))
exit_with_the_sweep()
